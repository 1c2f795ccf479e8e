"""The command line: one clear line on error, secrets never printed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from skuflow.cli import _parser, main
from skuflow.listing import ListingOutput, check_listing_options
from worker.listing import ListingCounts

pytestmark = pytest.mark.timeout(10)


def test_config_check_prints_resolved_settings_with_secrets_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "skuflow.toml"
    config.write_text('[b1]\npassword = "b1-pass-123"\n[engine]\nmax_in_flight = 64\n')
    monkeypatch.setenv("SKUFLOW_LWA_CLIENT_SECRET", "lwa-secret-456")
    monkeypatch.setenv("SKUFLOW_DATABASE_URL", "postgresql://skuflow:db-pass-789@db/skuflow")
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    resolved = json.loads(out)
    assert resolved["engine"]["max_in_flight"] == 64
    assert resolved["b1"]["password"] == "***"
    for secret in ("b1-pass-123", "lwa-secret-456", "db-pass-789"):
        assert secret not in out


def test_an_unknown_key_fails_with_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "skuflow.toml"
    config.write_text("[engine]\nmax_in_fligth = 3\n")
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("skuflow: error: engine.max_in_fligth: unknown key")


def test_a_broken_sku_map_fails_the_check_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sku_map = tmp_path / "skus.csv"
    sku_map.write_text("sku,item_code\nABC-1,A0001\nABC-1,A0002\n")
    config = tmp_path / "skuflow.toml"
    config.write_text(f'[mappings]\nsku_map = "{sku_map}"\n')
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "skus.csv:3" in err


LISTINGS = (["exceptions", "list"], ["postings", "list"])


@pytest.mark.parametrize("listing", LISTINGS, ids=" ".join)
@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--limit", "0"], "--limit"),
        (["--limit", "10001"], "--limit"),
        (["--limit", "-5"], "--limit"),
        (["--limit", "ten"], "--limit"),
        (["--limit", " 5"], "--limit"),
        (["--limit", "1_000"], "--limit"),
        (["--after", "-1"], "--after"),
        (["--after", "1.5"], "--after"),
        (["--after", "x"], "--after"),
        (["--after", str(2**63)], "--after"),
        (["--all", "--limit", "5"], "--all"),
    ],
)
def test_a_bad_page_of_a_listing_fails_with_one_line_before_any_database(
    listing: list[str],
    options: list[str],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "skuflow.toml"  # nothing listens here: the check comes first
    config.write_text('[database]\nurl = "postgresql://skuflow@127.0.0.1:1/skuflow"\n')
    assert main([*listing, *options, "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"skuflow: error: {named} ")
    assert repr(options[-1]) in captured.err or named == "--all"


@pytest.mark.parametrize(
    ("options", "limit", "after"),
    [
        ([], 1000, None),
        (["--limit", "1"], 1, None),
        (["--limit", "10000", "--after", "0"], 10000, 0),
        (["--after", "7536"], 1000, 7536),
        (["--all"], None, None),
        (["--all", "--after", str(2**63 - 1)], None, 2**63 - 1),
    ],
)
def test_listing_options_become_a_page_and_a_cursor(
    options: list[str], limit: int | None, after: int | None
) -> None:
    args = _parser().parse_args(["exceptions", "list", *options])
    check_listing_options(args)
    assert (args.limit, args.after) == (limit, after)
    postings = _parser().parse_args(["postings", "list"])
    check_listing_options(postings)
    assert postings.limit == 100


def test_dev_posts_to_b1_unless_told_ecc(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parser().parse_args(["dev"]).erp == "b1"
    assert _parser().parse_args(["dev", "--erp", "ecc"]).erp == "ecc"
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["dev", "--erp", "s4"])
    assert exit_info.value.code == 2
    assert "invalid choice: 's4'" in capsys.readouterr().err


def _counts(shown: int, total: int, remaining: int, last_id: int | None) -> ListingCounts:
    return ListingCounts(shown=shown, total=total, remaining=remaining, last_id=last_id)


@pytest.mark.parametrize("rows", [0, 1, 3])
def test_a_complete_json_listing_is_one_array_and_says_nothing_on_stderr(rows: int) -> None:
    out, err = io.StringIO(), io.StringIO()
    listing = ListingOutput(json_mode=True, header="ID", out=out, err=err)
    for n in range(rows):
        listing.json_row(json.dumps({"id": n}))
    listing.finish(_counts(rows, rows, 0, rows - 1 if rows else None), noun="x", status="all")
    assert json.loads(out.getvalue()) == [{"id": n} for n in range(rows)]
    assert out.getvalue().endswith("]\n")
    assert err.getvalue() == ""


def test_a_json_listing_cut_short_keeps_its_array_and_puts_the_marker_on_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    listing = ListingOutput(json_mode=True, header="ID", separator=", ", out=out, err=err)
    listing.json_row('{"id": 9}')
    listing.json_row('{"id": 8}')
    listing.finish(_counts(2, 124, 22, 8), noun="posting", status="all")
    assert out.getvalue() == '[{"id": 9}, {"id": 8}]\n'
    assert err.getvalue().count("\n") == 1
    assert json.loads(err.getvalue()) == {
        "truncated": True,
        "shown": 2,
        "total": 124,
        "remaining": 22,
        "next_after": 8,
    }


def test_a_text_listing_counts_from_the_database_and_says_when_it_is_cut_short() -> None:
    out, err = io.StringIO(), io.StringIO()
    listing = ListingOutput(json_mode=False, header="ID KIND", out=out, err=err)
    listing.text_row("1 undecodable")
    listing.finish(_counts(1, 7536, 7535, 1), noun="exception", status="all")
    assert out.getvalue().splitlines() == [
        "ID KIND",
        "1 undecodable",
        "1 of 7536 exception(s) with status all",
    ]
    assert err.getvalue() == (
        "skuflow: listing cut short: 7535 more exception(s) after id 1; "
        "continue with --after 1, or --all\n"
    )
    done_out, done_err = io.StringIO(), io.StringIO()
    complete = ListingOutput(json_mode=False, header="ID", out=done_out, err=done_err)
    complete.finish(_counts(0, 3, 0, None), noun="exception", status="open")
    assert done_out.getvalue().splitlines()[-1] == "0 of 3 exception(s) with status open"
    assert done_err.getvalue() == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["exceptions", "list", "--status", "bogus"],
        ["exceptions", "show", "abc"],
        ["postings", "show"],
        ["no-such-command"],
        ["run", "--class", "fast"],
    ],
)
def test_a_usage_error_is_one_line_and_exit_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("skuflow: error: ")
    assert err.count("\n") == 1
    assert "usage:" not in err
