"""The old name of envdoctor.tables_query, kept only while code written against it merges (checks/mmcv_.py,
checks/_facts.py and fix/plan.py are being rewritten on other branches). New code imports envdoctor.tables_query.
"""

from envdoctor.tables_query import *  # noqa: F401,F403
from envdoctor.tables_query import __all__  # noqa: F401
