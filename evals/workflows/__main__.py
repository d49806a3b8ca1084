from evals.workflows.run import main

raise SystemExit(main())
