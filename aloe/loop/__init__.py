"""The open-world loop: labels ledger, Label Studio I/O, oracle simulation, metrics, reports."""
