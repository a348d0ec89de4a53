"""Pure training bookkeeping: the label-efficiency ledger and its plateau signal."""
