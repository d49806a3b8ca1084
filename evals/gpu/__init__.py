"""The prepared GPU check (issue 24): one command on a lent H100 that measures what the
CPU test suite cannot (CUDA peak memory against the estimate, throughput against TRL
tuned, the out-of-memory back-off for real, generation and serving on the GPU), and a
tiny CPU dry run of the same code in the test suite so it cannot rot between lent
sessions. See README.md beside this file."""
