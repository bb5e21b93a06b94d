"""``wattwise advise``: text, JSON, plot, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from wattwise.cli.main import main


def test_advise_widths_text(capsys):
    rc = main(["advise", "--widths", "784,512,512,10", "--hardware", "butter-e-cpu",
               "--samples", "60000"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "NTP 669,706" in out and "FAR" in out and "option: batch size 256 (current)" in out
    assert out.splitlines()[0].startswith("wattwise sizing advice") and "best option:" in out.splitlines()[0]
    assert "per epoch of 60,000 samples (estimate)" in out


def test_advise_shape_json_parses(capsys):
    rc = main(["advise", "--shape", "rectangle", "--depth", "4", "--size", "1048576",
               "--inputs", "784", "--outputs", "10", "--hardware", "butter-e-gpu", "--json"])
    assert rc == 0
    j = json.loads(capsys.readouterr().out)
    assert j["hierarchy"]["name"] == "butter-e-gpu"
    assert j["working_sets"]["widths"][-1] == 10 and len(j["working_sets"]["widths"]) == 4
    assert abs(j["working_sets"]["ntp"] - 1048576) / 1048576 < 0.2
    assert {lv["level"] for lv in j["levels"]} == {"L1", "L2"}


def test_advise_dataset_and_coefficients(tmp_path, capsys):
    from wattwise.model.coefficients import preset
    from wattwise.sizing import save_coefficients

    doubled = preset("cpu").with_values([2 * v for v in preset("cpu").values])
    f = save_coefficients(doubled, tmp_path / "c.json")
    main(["advise", "--dataset", "529_pollen", "--shape", "rectangle", "--depth", "3", "--size",
          "256", "--hardware", "butter-e-cpu", "--json"])
    base = json.loads(capsys.readouterr().out)
    main(["advise", "--dataset", "529_pollen", "--shape", "rectangle", "--depth", "3", "--size",
          "256", "--hardware", "butter-e-cpu", "--json", "--coefficients", str(f)])
    dbl = json.loads(capsys.readouterr().out)
    assert base["working_sets"]["widths"] == [13, 13, 1]
    assert base["n_samples"] == round(0.8 * 3848)
    assert dbl["estimated_joules_per_sample"] == pytest.approx(2 * base["estimated_joules_per_sample"])


def test_advise_plot_writes_png(tmp_path, capsys):
    out = tmp_path / "knee.png"
    rc = main(["advise", "--dataset", "201_pol", "--shape", "rectangle", "--depth", "5",
               "--hardware", "butter-e-gpu", "--plot", str(out)])
    assert rc == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "wrote plot" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["--widths", "784,x"], "--widths '784,x'"),
    (["--widths", "784"], "--widths '784'"),
    (["--shape", "circle", "--depth", "3"], "--shape 'circle'"),
    (["--shape", "rectangle", "--depth", "1", "--size", "10", "--inputs", "3", "--outputs", "1"],
     "--depth '1'"),
    (["--shape", "rectangle", "--depth", "3", "--size", "10", "--outputs", "1"], "--inputs"),
    (["--widths", "4,4,1", "--batch-size", "0"], "--batch-size '0'"),
    (["--widths", "4,4,1", "--batch-range", "64:8"], "--batch-range '64:8'"),
    (["--widths", "4,4,1", "--batch-range", "64"], "--batch-range '64'"),
    (["--widths", "4,4,1", "--hardware", "tpu"], "--hardware 'tpu'"),
    (["--widths", "4,4,1", "--cache", "L2"], "--cache 'L2'"),
    (["--widths", "4,4,1", "--coefficients", "/nonexistent/c.json"], "--coefficients"),
    (["--widths", "4,4,1", "--dataset", "nope"], "--dataset"),
    ([], "describe the network"),
])
def test_advise_errors_are_one_line_exit_2(capsys, argv, needle):
    rc = main(["advise", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("wattwise advise: error:") and needle in err


def test_advise_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["advise", "--help"])
    assert e.value.code == 0
    assert "wattwise advise --widths 784,512,512,10" in capsys.readouterr().out


def test_advise_json_has_batch_size_and_width_options_with_bands(capsys):
    rc = main(["advise", "--widths", "64,128,128,10", "--batch-size", "64", "--hardware",
               "butter-e-cpu", "--json"])
    assert rc == 0
    j = json.loads(capsys.readouterr().out)
    kinds = [o["kind"] for o in j["options"]]
    assert "batch_size" in kinds and "width" in kinds
    assert kinds.index("width") > max(i for i, k in enumerate(kinds) if k == "batch_size")
    assert [o["batch_size"] for o in j["options"] if o["direction"] == "current"] == [64]
    for o in j["options"]:
        lo, hi = o["estimated_joules_per_sample_band"]
        assert lo < o["estimated_joules_per_sample"] < hi
        assert o["memory"]["total_mib"] > 0 and "activations" in o["memory"]["counted"]
    assert j["error_band"] == j["coefficients"]["cv_error"] > 0
    assert j["coefficients"]["source"].startswith("refit-cpu")  # the default preset


def test_advise_batch_range(capsys):
    main(["advise", "--widths", "64,128,10", "--batch-size", "48", "--batch-range", "8:64",
          "--hardware", "butter-e-gpu", "--json"])
    j = json.loads(capsys.readouterr().out)
    assert sorted(o["batch_size"] for o in j["options"] if o["kind"] == "batch_size") == \
        [8, 16, 32, 48, 64]
    assert j["batch_range"] == [8, 64]
