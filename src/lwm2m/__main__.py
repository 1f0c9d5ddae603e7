from lwm2m.cli import main

raise SystemExit(main())
