import csv

from spacetime.io.files import atomic_write_csv


def test_atomic_write_csv_round_trips_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old contents\n")
    rows = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25, "extra": "ignored"}, {"step": 3}]
    atomic_write_csv(path, rows, ["step", "loss"])
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert back == [{"step": "1", "loss": "0.5"}, {"step": "2", "loss": "0.25"}, {"step": "3", "loss": ""}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]
