"""The exchange past one machine: its journal replicated on JetStream, a hot standby."""
