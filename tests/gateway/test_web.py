"""The market page's files over plain HTTP on the websocket's port (gateway.web.pages)."""
from __future__ import annotations

import http.client
import json
import re

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.web.pages import POLICY, STATIC
from live import http_get, run


def test_the_page_and_its_files_are_served_with_a_strict_policy(live_server):
    """/ is the page; each file has its type, an ETag, and a policy allowing only this origin."""
    page = http_get(live_server, "/")
    assert page.status == 200
    assert page.getheader("Content-Type") == "text/html; charset=utf-8"
    assert page.body == (STATIC / "index.html").read_bytes()
    policy = page.getheader("Content-Security-Policy")
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    assert page.getheader("X-Content-Type-Options") == "nosniff"
    for name, kind in (("app.js", "text/javascript"), ("format.js", "text/javascript"),
                       ("style.css", "text/css"), ("favicon.svg", "image/svg+xml")):
        asset = http_get(live_server, f"/{name}?v=1")
        assert (asset.status, asset.getheader("Content-Type").split(";")[0]) == (200, kind)
        assert asset.body == (STATIC / name).read_bytes()


# A module's static imports: `import ... from "x"`, `export ... from "x"`, `import "x"`.
IMPORT = re.compile(r"""\b(?:import|export)\s[^;"'`]*?\bfrom\s*["']([^"']+)["']"""
                    r"""|\bimport\s*\(?\s*["']([^"']+)["']""")


def test_every_module_the_page_imports_is_served_as_javascript_under_the_policy(live_server):
    """The page loads one entry module (no inline script, no classic script); following its
    imports reaches every .js file of the page and nothing else, each imported by a relative
    path to a top-level file, each served as text/javascript with the page's policy."""
    page = http_get(live_server, "/").body.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts == [(' type="module" src="app.js"', "")], scripts
    seen: set[str] = set()
    todo = ["app.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = http_get(live_server, f"/{name}")
        assert module.status == 200, name
        assert module.getheader("Content-Type") == "text/javascript; charset=utf-8", name
        assert module.getheader("Content-Security-Policy") == POLICY, name
        assert module.getheader("X-Content-Type-Options") == "nosniff", name
        assert module.body == (STATIC / name).read_bytes(), name
        for match in IMPORT.finditer(module.body.decode()):
            spec = match.group(1) or match.group(2)
            assert re.fullmatch(r"\./[a-z_]+\.js", spec), f"{name} imports {spec!r}"
            todo.append(spec.removeprefix("./"))
    assert seen == {p.name for p in STATIC.glob("*.js")}, "a module no page imports"


def test_a_current_copy_is_answered_not_modified(live_server):
    """A client sending the ETag it has gets 304 and no body."""
    etag = http_get(live_server, "/app.js").getheader("ETag")
    again = http_get(live_server, "/app.js", **{"If-None-Match": etag})
    assert (again.status, again.body) == (304, b"")
    assert again.getheader("ETag") == etag and again.getheader("Content-Length") is None
    assert http_get(live_server, "/app.js", **{"If-None-Match": '"other"'}).status == 200
    for header in ([f'"other", W/{etag}'], ['"other"', etag], ["*"]):
        assert get_raw(live_server, "/app.js", [("If-None-Match", h) for h in header]).status \
            == 304, header
    inside = etag[:-1] + 'x"'                  # a longer tag holding this one's text
    assert http_get(live_server, "/app.js", **{"If-None-Match": f'"x{etag[1:-1]}", {inside}'}
               ).status == 200


def get_raw(live, path: str, headers: list[tuple[str, str]]) -> http.client.HTTPResponse:
    """A GET sending ``headers`` as given, repeated names and all."""
    conn = http.client.HTTPConnection("127.0.0.1", live.server.port, timeout=5)
    conn.putrequest("GET", path)
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def test_repeated_headers_are_read_not_refused(live_server):
    """A header sent twice (Upgrade, If-None-Match) is read as the list it is: no 500."""
    page = get_raw(live_server, "/", [("Upgrade", "h2c"), ("Upgrade", "foo")])
    assert page.status == 200 and page.body == (STATIC / "index.html").read_bytes()


@pytest.mark.parametrize("path", ["/nope", "/../gateway/server.py", "/static/app.js",
                                  "/%2e%2e/pyproject.toml", "/index.html/", "/.hidden"])
def test_nothing_but_the_pages_files_is_served(live_server, path):
    """Any other path is 404, whatever it tries."""
    response = http_get(live_server, path)
    assert response.status == 404 and b"/ws" in response.body


def test_the_websocket_is_only_at_ws(live_server):
    """A plain GET of /ws is told to upgrade; a websocket handshake elsewhere is refused."""
    assert http_get(live_server, "/ws").status == 426

    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            await connect(live_server.url.replace("/ws", "/"))
        assert refused.value.response.status_code == 404
    run(scenario())


def test_no_secret_is_in_any_served_file(live_server):
    """The page is anonymous: no API key or secret of any account is in what is served."""
    accounts = json.loads((live_server.data_dir / "demo-accounts.json").read_text())
    secrets = [a[k] for a in accounts for k in ("api_key", "api_secret")]
    for path in ["/", *(f"/{p.name}" for p in STATIC.iterdir())]:
        body = http_get(live_server, path).body.decode()
        assert not any(s in body for s in secrets)
        assert "auth.login" not in body
