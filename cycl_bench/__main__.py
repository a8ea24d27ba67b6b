from cycl_bench.cli import main

raise SystemExit(main())
