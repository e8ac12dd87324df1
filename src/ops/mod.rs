//! What the operator's commands do, apart from parsing their arguments:
//! each is a driver of the same code as the daemon (the runner, the
//! adapters, `check::evaluate`, the journal and the `/status` documents),
//! never a second copy of it. `cli` parses and prints exit codes; these
//! modules do the work and return typed results.
