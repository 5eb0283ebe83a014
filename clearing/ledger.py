"""Accounts, collateral, positions, fees and variation margin, in integer micro-dollars.

Money moves in four ways only, each between accounts or across the edge with
a record: deposits and withdrawals (the edge), fees (trader to the fee
account, or back for a maker rebate), variation margin at each settlement
(between traders, summing to zero), and, later, liquidation losses charged
to the insurance fund. So the sum of all collateral always equals deposits
minus withdrawals.

Variation margin is the futures way of marking: at a settlement each
account is paid what its positions made since the previous one, at the
settlement prices:

    VM = (qty_now x S_today - qty_then x S_previous + cash_of_todays_trades) x hours x tick

where cash_of_todays_trades is minus the sum of side x qty x price of the
day's fills. Trades are zero-sum and positions net to zero, so VM sums to
zero over all accounts, exactly: every term is an integer.

A position's average entry price and realized P&L are for people (what
account.positions shows); they never move cash. Its cost basis is an integer:
the sum of lots x price of the lots still open, in micro-USD per GPU-hour.
Closing c of q lots takes c/q of it, rounded half to even; closing the last
lot takes what is left, so a round trip realizes exactly what its trades made.

Roundings: a fee is rounded up (against the member), a rebate toward zero;
the cost taken by a partial close is rounded half to even.
"""
from __future__ import annotations

from fractions import Fraction

import msgspec

from engine.messages import RejectReason, Trade


class LedgerError(ValueError):
    """A money operation the ledger refuses; ``reason`` and ``field`` go on the wire."""

    def __init__(self, reason: RejectReason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


class FeeSchedule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fees in hundredths of a basis point of notional; a negative maker fee is a rebate."""
    maker_centi_bps: int = 0          # 0.00%
    taker_centi_bps: int = 250        # 0.025%

    def __post_init__(self) -> None:
        maker, taker = self.maker_centi_bps, self.taker_centi_bps
        if not (-100 <= maker <= taker <= 1000 and maker + taker >= 0):
            raise ValueError(
                f"fees must satisfy -1 bp <= maker <= taker <= 10 bp and a maker rebate no "
                f"larger than the taker fee (in 1/100 bp: -100 <= maker <= taker <= 1000, "
                f"maker + taker >= 0), so the exchange never pays more rebate than it charges; "
                f"got maker {maker}, taker {taker}")


def fee_micros(notional_micros: int, centi_bps: int) -> int:
    """The fee on a notional: a charge rounded up, a rebate (negative) rounded toward zero."""
    scaled = notional_micros * centi_bps            # fee x 1,000,000
    if scaled >= 0:
        return -(-scaled // 1_000_000)              # up
    return -((-scaled) // 1_000_000)                # toward zero


def _share(total: int, part: int, whole: int) -> int:
    """total x part / whole, rounded half to even (exact integers)."""
    q, r = divmod(total * part, whole)
    if 2 * r > whole or (2 * r == whole and q % 2):
        q += 1
    return q


class Position:
    """One account's position in one instrument."""
    __slots__ = ("qty", "cost", "realized_micros", "settled_qty", "day_cash")

    def __init__(self) -> None:
        self.qty = 0                  # lots, + long, - short
        self.cost = 0                 # signed lots x entry price of the open lots, micro-USD/GPU-h
        self.realized_micros = 0      # for display: closing fills against the average entry
        self.settled_qty = 0          # qty at the last settlement
        self.day_cash = 0             # -sum(side x qty x price) of fills since then, ticks x lots


class Account:
    __slots__ = ("account_id", "collateral", "positions", "fees_paid", "closed_realized")

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.collateral = 0           # micro-USD
        self.positions: dict[str, Position] = {}
        self.fees_paid = 0            # micro-USD, net of rebates
        self.closed_realized = 0      # realized P&L of positions closed out at expiry


class Contract(msgspec.Struct, frozen=True, gc=False):
    """What the ledger needs of an instrument: its size and its last settlement price."""
    hours: int                  # GPU-hours per lot
    tick_micros: int            # micro-USD per tick per GPU-hour


class Ledger:
    """Collateral and positions of every account.

    Args:
        contracts: symbol -> Contract.
        settlement_prices: symbol -> the price positions were last settled at
            (ticks; the reference price before the first settlement).
        fees: The fee schedule.
        fee_account: The account fees are paid to.
    """

    def __init__(self, contracts: dict[str, Contract], settlement_prices: dict[str, int],
                 fees: FeeSchedule, fee_account: int) -> None:
        self.contracts = contracts
        self.settlement_prices = dict(settlement_prices)
        self.fees = fees
        self.fee_account = fee_account
        self.accounts: dict[int, Account] = {}
        self.deposited = 0            # deposits minus withdrawals, micro-USD
        self.long_lots: dict[str, int] = {s: 0 for s in contracts}   # open interest
        self.account(fee_account)

    def account(self, account_id: int) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = Account(account_id)
        return account

    # -- Cash across the edge ------------------------------------------------------

    def deposit(self, account_id: int, micros: int) -> None:
        if micros <= 0:
            raise LedgerError(RejectReason.INVALID_AMOUNT, "a deposit must be positive", "amount")
        self.account(account_id).collateral += micros
        self.deposited += micros

    def withdraw(self, account_id: int, micros: int, *, allowed: int | None = None) -> None:
        """Withdraw; ``allowed`` is the most the caller's margin check lets go (None: the
        collateral)."""
        if micros <= 0:
            raise LedgerError(RejectReason.INVALID_AMOUNT, "a withdrawal must be positive",
                              "amount")
        account = self.accounts.get(account_id)       # a refusal creates no account
        collateral = 0 if account is None else account.collateral
        most = collateral if allowed is None else min(allowed, collateral)
        if micros > most:
            raise LedgerError(RejectReason.INSUFFICIENT_MARGIN,
                              f"at most {max(most, 0)} micro-USD can be withdrawn", "amount")
        account.collateral -= micros
        self.deposited -= micros

    def move(self, from_id: int, to_id: int, micros: int) -> None:
        """Move collateral between two accounts (the default waterfall); the sum is unchanged."""
        self.account(from_id).collateral -= micros
        self.account(to_id).collateral += micros

    # -- Fills -----------------------------------------------------------------------

    def fees_of(self, trade: Trade) -> tuple[int, int]:
        """(maker fee, taker fee) of a fill in micro-USD; negative is a rebate."""
        contract = self.contracts[trade.symbol]
        notional = trade.price * trade.qty * contract.hours * contract.tick_micros
        return (fee_micros(notional, self.fees.maker_centi_bps),
                fee_micros(notional, self.fees.taker_centi_bps))

    def apply_trade(self, trade: Trade) -> tuple[int, int]:
        """Book both sides of a fill and their fees; return (maker fee, taker fee) in micro-USD."""
        contract = self.contracts[trade.symbol]
        fees = self.fees_of(trade)
        for account_id, side, fee in (
                (trade.maker_account_id, -trade.aggressor, fees[0]),
                (trade.taker_account_id, int(trade.aggressor), fees[1])):
            account = self.account(account_id)
            self._fill(account, trade.symbol, contract, side, trade.price, trade.qty)
            account.collateral -= fee
            account.fees_paid += fee
            self.accounts[self.fee_account].collateral += fee
        return fees

    def _fill(self, account: Account, symbol: str, contract: Contract, side: int, price: int,
              qty: int) -> None:
        pos = account.positions.get(symbol)
        if pos is None:
            pos = account.positions[symbol] = Position()
        pos.day_cash -= side * qty * price
        signed = side * qty
        value = price * contract.tick_micros            # micro-USD per GPU-hour
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):          # opening or adding
            pos.cost += signed * value
        else:                                                       # reducing, maybe flipping
            closed = min(qty, abs(pos.qty))
            taken = _share(pos.cost, closed, abs(pos.qty))
            direction = 1 if pos.qty > 0 else -1
            pos.realized_micros += (direction * closed * value - taken) * contract.hours
            pos.cost -= taken
            if qty > closed:                                        # flipped: the rest opens
                pos.cost = side * (qty - closed) * value
        self.long_lots[symbol] += max(pos.qty + signed, 0) - max(pos.qty, 0)
        pos.qty += signed

    # -- What account.positions shows ------------------------------------------------

    def avg_price(self, symbol: str, pos: Position) -> Fraction | None:
        """The position's average entry price in ticks (exact), None when flat."""
        if pos.qty == 0:
            return None
        return Fraction(pos.cost, pos.qty * self.contracts[symbol].tick_micros)

    def unrealized(self, symbol: str, pos: Position, mark: int) -> int:
        """The open lots at ``mark`` against their cost, micro-USD (exact)."""
        c = self.contracts[symbol]
        return (pos.qty * mark * c.tick_micros - pos.cost) * c.hours

    # -- Marking and settlement --------------------------------------------------------

    def pnl_since_settlement(self, account: Account, marks: dict[str, int]) -> int:
        """What the account's positions made since their last settlement at these prices
        (micro-USD); a symbol without a mark counts at its last settlement price."""
        total = 0
        for symbol, pos in account.positions.items():
            total += self._pnl(symbol, pos, marks.get(symbol, self.settlement_prices[symbol]))
        return total

    def _pnl(self, symbol: str, pos: Position, price: int) -> int:
        c = self.contracts[symbol]
        return ((pos.qty * price - pos.settled_qty * self.settlement_prices[symbol]
                 + pos.day_cash) * c.hours * c.tick_micros)

    def settle(self, prices: dict[str, int]) -> dict[int, int]:
        """Settle the positions in these symbols at these prices (ticks); others are untouched.

        Returns:
            account_id -> variation margin paid to it (negative: paid by it), micro-USD;
            the values sum to zero.
        """
        vm: dict[int, int] = {}
        for account in self.accounts.values():
            amount = 0
            touched = False
            for symbol, price in prices.items():
                pos = account.positions.get(symbol)
                if pos is None or not (pos.qty or pos.settled_qty or pos.day_cash):
                    continue
                touched = True
                amount += self._pnl(symbol, pos, price)
                pos.settled_qty = pos.qty
                pos.day_cash = 0
            if touched:
                account.collateral += amount
                vm[account.account_id] = amount
        self.settlement_prices.update(prices)
        return vm

    def close_out(self, symbol: str, price: int) -> dict[int, int]:
        """Final settlement: settle ``symbol`` at ``price`` and close every position in it.

        Returns:
            The cash each account received, as settle() does.
        """
        vm = self.settle({symbol: price})
        self.long_lots[symbol] = 0
        for account in self.accounts.values():
            pos = account.positions.pop(symbol, None)
            if pos is not None:
                # Closing at the final price: what is left of the entry becomes realized.
                pos.realized_micros += self.unrealized(symbol, pos, price)
                account.closed_realized += pos.realized_micros
        return vm

    def cascade(self, symbol: str, into: list[str]) -> list[int]:
        """Turn every position in ``symbol`` into the same position in each of ``into`` (its
        periods, whose hours add up to its own), at its last settlement price; no cash moves.

        Each new position is booked as a fill at that price, and what the old one made since
        its last settlement at that price (its trades since) is carried into each new one's
        unsettled cash: summed over ``into``, weighted by hours, the next settlement then
        pays exactly what settling ``symbol`` at the hours-weighted mean of their prices
        would have. Returns the accounts that held anything in ``symbol``, in order.
        """
        price = self.settlement_prices[symbol]
        moved = []
        for account_id in sorted(self.accounts):
            account = self.accounts[account_id]
            pos = account.positions.pop(symbol, None)
            if pos is None:
                continue
            carry = (pos.qty - pos.settled_qty) * price + pos.day_cash      # ticks x lots
            side = 1 if pos.qty > 0 else -1
            for target in into:
                if pos.qty:
                    self._fill(account, target, self.contracts[target], side, price,
                               abs(pos.qty))
                held = account.positions.get(target)
                if held is None:
                    held = account.positions[target] = Position()
                held.day_cash += carry
            pos.realized_micros += self.unrealized(symbol, pos, price)
            account.closed_realized += pos.realized_micros
            moved.append(account_id)
        self.long_lots[symbol] = 0
        return moved

    def add_contract(self, symbol: str, contract: Contract, price: int) -> None:
        """A newly listed contract, settled at ``price`` (its reference) until it is."""
        self.contracts[symbol] = contract
        self.settlement_prices[symbol] = price
        self.long_lots[symbol] = 0

    def remove_contract(self, symbol: str) -> None:
        """A delisted contract: its positions were closed out or cascaded."""
        if self.long_lots[symbol] or any(symbol in a.positions for a in self.accounts.values()):
            raise ValueError(f"{symbol} still has positions")
        del self.contracts[symbol], self.settlement_prices[symbol], self.long_lots[symbol]

    def open_interest(self, symbol: str) -> int:
        """Lots open in the instrument: the sum of the long positions (kept as fills come)."""
        return self.long_lots[symbol]

