"""C{python -m voipgw.admin}: the same as the C{voipgw-admin} command."""

import sys

from voipgw.admin.cli import main

sys.exit(main())
