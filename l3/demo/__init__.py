"""The demo: the whole chain (`run`) on the bundled synthetic corpus (`corpus/`).

`l3.demo` re-exports `run_demo`, `DemoConfig` and the table helpers.
"""

from l3.demo.run import (FRONT_END_ROWS, SUMMARY_JSON, TARGETS, DemoConfig, front_end_table,
                         read_summaries, run_demo, summary_table)
