"""A picture of a page mc.explore wrote, as headless Chromium draws it (docs/explore.png is one).

    python scripts/explore_screenshot.py page.html docs/explore.png --unit conv2:35,6,5

--unit opens a unit first, as a click on it does (the page's #unit= address); the picture
is the whole page. Needs Debian's chromium (apt-get install chromium).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))   # the tests' Chromium driver
from chromium import Chromium  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", help="an HTML file written by mc.explore or 'python -m minicnn explore'")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--unit", default=None, help="a unit to open first, LAYER:CHANNEL,ROW,COLUMN (default: none)")
    parser.add_argument("--width", type=int, default=1400, help="the window's width in CSS pixels (default: 1400)")
    args = parser.parse_args(argv)
    with Chromium(width=args.width) as browser:
        page = Path(args.page)
        browser.open(page)
        if args.unit:
            browser.evaluate(f"location.hash = {('unit=' + args.unit)!r}")
            browser.evaluate("new Promise(resolve => setTimeout(resolve, 100))")
        Path(args.out).write_bytes(browser.screenshot(full_page=True))
        if browser.errors:
            print(f"the page reported errors: {browser.errors}", file=sys.stderr)
            return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
