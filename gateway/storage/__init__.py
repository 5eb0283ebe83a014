"""What lives on disk: the journal, snapshots, and recovery from them."""
