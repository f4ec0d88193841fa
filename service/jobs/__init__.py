"""Training jobs: the SQLite job table, a job's files, parameter validation and command lines,
the dispatcher that runs trainers as child processes, the standalone worker, and the jobs API."""
