"""Every result the docs quote is tied to the command that prints it.

PRINTED records, for each number a documented command prints, what it printed when the docs
were last regenerated (on this project's 2-core machine: the host-compiled kernels, 2 threads,
where every run below is the same to the last digit each time) and the range it may print on
another machine, thread count or backend (float32 sums in another order make another run of
the same recipe). QUOTED says where the docs quote each of them.

- test_the_docs_quote_what_the_commands_printed (fast, always): every quoted figure equals its
  PRINTED value, rounded as the docs round it. Regenerating the docs means running the commands,
  writing their numbers into PRINTED, then into the docs; this test finds every place to change.
- test_the_commands_still_print_it (minutes; skipped with pytest --skip-figures): runs the commands on the
  kernels backend with 2 threads and checks each printed number lies in its range.

Training times are not here: they depend on the machine's load, and README's CPU table and
docs/kernels.md are measured separately (benchmarks/).
"""

import os
import re
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

MAIN_JOB = "python -m minicnn train"
FIVE_CROP = "python -m minicnn evaluate runs/<timestamp>/checkpoint.npz --ten-crop"
TRANSFER = "python -m minicnn transfer"
TRANSFER_10 = "python -m minicnn transfer --shots 10"

# command: the pattern of the printed number (the occurrence'th match, from 0), the value printed, its range
Printed = namedtuple("Printed", "command pattern occurrence value low high")


def _way(title):   # a line of the transfer demo's summary: "  fine-tuned   test error  17.75%  (draws: ..."
    return rf"^  {re.escape(title)} +test error +([\d.]+)%"


PRINTED = {
    # the main job; other thread counts and the NumPy reference backend gave 1.8-2.6% and 0.0-0.3%
    "main top-1": Printed(MAIN_JOB, r"test top-1 error ([\d.]+)%", 0, 1.80, 1.0, 3.5),
    "main top-5": Printed(MAIN_JOB, r"top-5 error ([\d.]+)%", 0, 0.00, 0.0, 0.6),
    "main epoch 5 top-1": Printed(MAIN_JOB, r"^epoch 5/15 .*\| test loss [\d.]+ top-1 err ([\d.]+)%", 0, 4.80,
                                  2.0, 9.0),
    "main five-crop top-1": Printed(FIVE_CROP, r"top-1 error ([\d.]+)%", 0, 1.90, 1.0, 3.5),
    "main five-crop top-5": Printed(FIVE_CROP, r"top-5 error ([\d.]+)%", 0, 0.10, 0.0, 0.6),
    # the transfer demo: few-shot errors vary much more with the order of float32 sums
    "pretrained": Printed(TRANSFER, r"pretrained test error on the digits 0-4: ([\d.]+)%", 0, 1.99, 0.8, 4.0),
    "5 shots frozen": Printed(TRANSFER, _way("frozen base + new head"), 0, 18.07, 12.0, 24.0),
    "5 shots fine-tuned": Printed(TRANSFER, _way("fine-tuned"), 0, 17.75, 12.0, 24.0),
    "5 shots scratch": Printed(TRANSFER, _way("from scratch"), 0, 21.49, 16.0, 28.0),
    "5 shots pool5 avg": Printed(TRANSFER, _way("(frozen to pool5, avg head)"), 0, 26.97, 18.0, 34.0),
    "faces frozen": Printed(TRANSFER, _way("frozen base + new head"), 1, 4.00, 1.0, 8.0),
    "faces fine-tuned": Printed(TRANSFER, _way("fine-tuned"), 1, 2.75, 1.0, 6.0),
    "faces scratch": Printed(TRANSFER, _way("from scratch"), 1, 2.63, 1.0, 6.0),
    "faces pool5 avg": Printed(TRANSFER, _way("(frozen to pool5, avg head)"), 1, 7.88, 3.0, 14.0),
    "10 shots frozen": Printed(TRANSFER_10, _way("frozen base + new head"), 0, 12.75, 8.0, 17.0),
    "10 shots fine-tuned": Printed(TRANSFER_10, _way("fine-tuned"), 0, 12.55, 8.0, 17.0),
    "10 shots scratch": Printed(TRANSFER_10, _way("from scratch"), 0, 12.69, 8.0, 18.0),
    "10 shots pool5 avg": Printed(TRANSFER_10, _way("(frozen to pool5, avg head)"), 0, 20.58, 14.0, 26.0),
}

# where the docs quote them: (file, pattern whose one group is the quoted number, PRINTED key); the number
# is in percent, or a fraction where the group is named "fraction"
QUOTED = [
    ("README.md", r"CPU \(the host-compiled kernels\): ([\d.]+)% top-1 test error", "main top-1"),
    ("docs/training.md", r"reaches \*\*([\d.]+)% top-1 and [\d.]+% top-5 test error\*\*", "main top-1"),
    ("docs/training.md", r"reaches \*\*[\d.]+% top-1 and ([\d.]+)% top-5 test error\*\*", "main top-5"),
    ("docs/training.md", r"`test_top1_error` (?P<fraction>0\.\d+)", "main top-1"),   # metrics.json's fraction
    ("docs/training.md", r"shows the test error at ([\d.]+)% by epoch 5", "main epoch 5 top-1"),
    ("docs/training.md", r"The same checkpoint scored ([\d.]+)% top-1", "main five-crop top-1"),
    ("docs/training.md", r"The same checkpoint scored [\d.]+% top-1 and ([\d.]+)% top-5", "main five-crop top-5"),
    ("docs/transfer.md", r"\(([\d.]+)% test error on the digits 0-4\)", "pretrained"),
    ("docs/transfer.md", r"\| frozen base \(to relu4\) \+ new head \| \*\*([\d.]+)%\*\* \|", "5 shots frozen"),
    ("docs/transfer.md", r"\| fine-tuned from conv3 \| \*\*([\d.]+)%\*\* \|", "5 shots fine-tuned"),
    ("docs/transfer.md", r"\| from scratch \| ([\d.]+)% \|", "5 shots scratch"),
    ("docs/transfer.md", r"\+ global-average-pooling head \| ([\d.]+)% \|", "5 shots pool5 avg"),
    ("docs/transfer.md", r"\| frozen base \(to relu4\) \+ new head \|[^|]+\|[^|]+\| ([\d.]+)% \|", "faces frozen"),
    ("docs/transfer.md", r"\| fine-tuned from conv3 \|[^|]+\|[^|]+\| ([\d.]+)% \|", "faces fine-tuned"),
    ("docs/transfer.md", r"\| from scratch \|[^|]+\|[^|]+\| ([\d.]+)% \|", "faces scratch"),
    ("docs/transfer.md", r"\+ global-average-pooling head \|[^|]+\|[^|]+\| ([\d.]+)% \|", "faces pool5 avg"),
    ("docs/transfer.md", r"\| frozen base \(to relu4\) \+ new head \|[^|]+\| ([\d.]+)% \|", "10 shots frozen"),
    ("docs/transfer.md", r"\| fine-tuned from conv3 \|[^|]+\| ([\d.]+)% \|", "10 shots fine-tuned"),
    ("docs/transfer.md", r"\| from scratch \|[^|]+\| ([\d.]+)% \|", "10 shots scratch"),
    ("docs/transfer.md", r"\+ global-average-pooling head \|[^|]+\| ([\d.]+)% \|", "10 shots pool5 avg"),
]


def printed_numbers(command, output):
    """{PRINTED key: the number ``output`` (stdout and stderr, where the epochs go) of ``command`` shows}."""
    found = {}
    for key, p in PRINTED.items():
        if p.command == command:
            matches = re.findall(p.pattern, output, re.M)
            assert len(matches) > p.occurrence, f"{command} printed nothing like {p.pattern!r}:\n{output}"
            found[key] = float(matches[p.occurrence])
    return found


def test_the_registry_is_whole():
    assert {key for _, _, key in QUOTED} == set(PRINTED), "a printed number the docs do not quote, or the reverse"
    for key, p in PRINTED.items():
        assert p.value is None or p.low <= p.value <= p.high, f"{key}: {p.value} lies outside its own range"


@pytest.mark.parametrize("where, pattern, key", QUOTED, ids=[f"{w}:{k}" for w, _, k in QUOTED])
def test_the_docs_quote_what_the_commands_printed(where, pattern, key):
    text = " ".join((ROOT / where).read_text().split())    # a sentence may break across lines
    quoted = list(re.finditer(pattern, text))
    assert len(quoted) == 1, f"{where}: {len(quoted)} places match {pattern!r} (the sentence changed?)"
    number = quoted[0].group(1)
    value = PRINTED[key].value
    assert value is not None, f"{key}: PRINTED has no value, but {where} quotes {number}"
    if "fraction" in quoted[0].groupdict():            # 0.018 is 1.8%
        number = f"{float(number) * 100:.{max(0, len(number) - 4)}f}"
    decimals = len(number.partition(".")[2])
    assert float(number) == round(value, decimals), \
        f"{where} quotes {number} for {key}, but `{PRINTED[key].command}` printed {value:.2f}"


RUNS = {   # how each command is run here: argv after `python -m minicnn`
    MAIN_JOB: ["train", "--out", "{out}/main"],
    FIVE_CROP: ["evaluate", "{out}/main/checkpoint.npz", "--ten-crop"],
    TRANSFER: ["transfer", "--quiet", "--out", "{out}/transfer"],
    TRANSFER_10: ["transfer", "--quiet", "--shots", "10", "--out", "{out}/transfer10"],
}


@pytest.mark.figures
def test_the_commands_still_print_it(tmp_path):
    assert set(RUNS) == {p.command for p in PRINTED.values()}
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINICNN_NUM_THREADS="2", MINICNN_CPU_BACKEND="kernels")
    outside = []
    for command, argv in RUNS.items():      # in order: evaluate tests the main job's checkpoint
        done = subprocess.run([sys.executable, "-m", "minicnn", *[a.format(out=tmp_path) for a in argv]], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr
        for key, number in printed_numbers(command, done.stdout + done.stderr).items():
            p = PRINTED[key]
            if not p.low <= number <= p.high:
                outside.append(f"{command}: {key} {number} outside [{p.low}, {p.high}]")
            elif p.value is not None and number != p.value:
                print(f"{command}: {key} {number}, the docs quote {p.value} (another machine or thread count)")
    assert not outside, outside
