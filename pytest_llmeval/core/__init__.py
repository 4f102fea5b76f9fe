"""The pure domain: cases, checks, case results and gate decisions. No pytest, no I/O."""
