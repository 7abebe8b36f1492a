"""A `python -m` path from before utils/ was split by concept, kept for the commands written with it:
it runs utils.cutouts.benchmark, after a note that names it."""
import runpy
import sys

NEW = "utils.cutouts.benchmark"

if __name__ == "__main__":
    print(f"note: `python -m {__spec__.name}` is now `python -m {NEW}`", file=sys.stderr)
    runpy.run_module(NEW, run_name="__main__", alter_sys=True)
