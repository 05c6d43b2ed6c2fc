"""The report page without a browser: its policy, its escaping, its contents and its size."""

from __future__ import annotations

import json
import re
import shutil

import torch

from tests.report.conftest import HOSTILE_COLUMN, HOSTILE_RUN
from vaelab.report.build import build_report
from vaelab.report.html import CSP, Section, page, table
from vaelab.runs.layout import REPORT_FILE


def _csp(text: str) -> str:
    m = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', text)
    assert m, "no Content-Security-Policy meta tag"
    return m.group(1)


def test_the_page_forbids_scripts_and_remote_loads_and_escapes_what_it_is_given():
    text = page(
        "<script>alert('t')</script>",
        'sub "quoted" & <i>',
        [Section('a"><script>x</script>', "<b>t</b>", table(["<th>"], [["<td onclick=x>"]]))],
    )
    policy = _csp(text)
    assert "default-src 'none'" in policy and "img-src data:" in policy
    assert "script-src" not in policy  # scripts fall under default-src 'none'
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt;" in text
    assert "&lt;td onclick=x&gt;" in text and "<td onclick" not in text
    assert "sub &quot;quoted&quot; &amp; &lt;i&gt;" in text
    assert CSP == policy


def test_mnist_report_is_one_self_contained_file_with_every_section(mnist_run):
    text = (mnist_run / REPORT_FILE).read_text()
    assert _csp(text) == CSP
    assert "<script" not in text.lower()
    # every picture is embedded; nothing names another file or host
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) >= 7 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(href|src)=\"(https?:|//)", text)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    for key in ("run", "curves", "evaluation", "latents", "samples", "reconstructions",
                "interpolations", "traversals"):  # fmt: skip
        assert f'<section id="{key}">' in text, key
    # the folder's name is markup: shown as text only
    assert "<img src=x" not in text
    assert "run &lt;img src=x onerror=alert(2)&gt;" in text
    # what was run and with what
    assert "vaelab train --out" in text and f"torch version</td><td>{torch.__version__}" in text
    assert 100_000 < len(text.encode()) < 3_000_000
    # the evaluation's numbers are the saved ones
    saved = json.loads((mnist_run / "eval_test.json").read_text())
    assert f"{saved['log_likelihood']:.3f} ± {saved['log_likelihood_stderr']:.3f}" in text
    assert f'active units</td><td class="num">{saved["active_units"]} of' in text


def test_a_run_that_recorded_no_command_or_versions_says_so(mnist_run, tmp_path):
    old = shutil.copytree(mnist_run, tmp_path / "old")
    meta = json.loads((old / "config.json").read_text())
    del meta["provenance"]  # as written before this release
    (old / "config.json").write_text(json.dumps(meta))
    text = build_report(old)
    assert "command line</td><td>not recorded" in text
    assert "torch version</td><td>not recorded" in text


def test_a_run_whose_data_moved_still_gets_the_sections_that_need_no_data(table_run, tmp_path):
    run = shutil.copytree(table_run, tmp_path / "moved")
    meta = json.loads((run / "config.json").read_text())
    meta["run"]["data"]["dataset"] = str(tmp_path / "gone.csv")
    (run / "config.json").write_text(json.dumps(meta))
    text = build_report(run)
    for key in ("run", "curves", "evaluation", "data"):
        assert f'<section id="{key}">' in text, key
    assert "Sections that need the data are left out" in text and "gone.csv" in text
    assert '<section id="latents">' not in text


def test_table_report_shows_hostile_names_as_text_and_lists_the_least_likely_rows(table_run):
    text = (table_run / REPORT_FILE).read_text()
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the column, in tables
    assert "wine &lt;svg onload=alert(3)&gt;.csv" in text  # the data file, in the config
    assert "<svg" not in text
    for key in ("samples", "reconstructions", "likelihood", "latents"):
        assert f'<section id="{key}">' in text, key
    assert "interpolations" not in text  # images only
    assert "Least likely rows" in text and "(label &lt;i&gt;cultivar_" in text
    assert "<i>" not in text
    assert HOSTILE_COLUMN not in text and HOSTILE_RUN not in text
