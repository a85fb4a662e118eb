"""MLflow tracking against a real SQLite store."""

from __future__ import annotations

import sqlite3
import uuid

from sqlalchemy import event


def test_a_dataset_another_stage_inserts_meanwhile_does_not_fail_log_inputs(tmp_path, monkeypatch):
    """Fan-out stages log the same dataset at once. MLflow looks the dataset up, then inserts
    it: here another connection commits that very row between the lookup and the insert (the
    race the CI run hit, made certain), and the run still gets its input, sharing the row."""
    from bertpipe import tracking

    db = tmp_path / "m.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    client = tracking._client()
    experiment = client.create_experiment("e")
    run = client.create_run(experiment)
    inputs = [
        {
            "name": "pretrain_data/train",
            "source": "data/pretrain/train",
            "digest": "abc.dir",
            "rows": 10,
            "context": "train",
        },
    ]
    engine = client._tracking_client.store.engine
    raced = []

    def insert_first(conn, cursor, statement, parameters, context, executemany):
        if raced or not statement.lstrip().startswith("INSERT INTO datasets"):
            return
        raced.append(statement)
        other = sqlite3.connect(db)
        other.execute(
            "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type,"
            " dataset_source) VALUES (?, ?, ?, ?, 'local', '{}')",
            (uuid.uuid4().hex, int(experiment), "pretrain_data/train", "abc.dir"),
        )
        other.commit()
        other.close()

    event.listen(engine, "before_cursor_execute", insert_first)
    try:
        tracking.log_inputs(run.info.run_id, inputs)
    finally:
        event.remove(engine, "before_cursor_execute", insert_first)

    assert raced, "the race was not staged: MLflow never inserted a dataset"
    logged = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert [(d.dataset.name, d.dataset.digest) for d in logged] == [
        ("pretrain_data/train", "abc.dir")
    ]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM datasets").fetchone() == (1,)


def test_log_inputs_does_not_retry_other_errors(tmp_path, monkeypatch):
    """Only the duplicate key is retried: a run that is not there fails at once."""
    import pytest
    from mlflow.exceptions import MlflowException

    from bertpipe import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(MlflowException, match="not found"):
        tracking.log_inputs(
            "0" * 32,
            [{"name": "d", "source": "s", "digest": "x", "rows": 1, "context": "train"}],
        )


def test_an_experiment_another_stage_creates_meanwhile_is_used(tmp_path, monkeypatch):
    """Two stages find no experiment and both create it: the later one uses the other's."""
    from bertpipe import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    client = tracking._client()
    real_lookup = client.get_experiment_by_name
    lookups = []

    def lookup_before_the_other_stage_created_it(name):
        lookups.append(name)
        if len(lookups) == 1:
            tracking._client().create_experiment(name)  # the other stage, just after the lookup
            return None
        return real_lookup(name)

    monkeypatch.setattr(client, "get_experiment_by_name", lookup_before_the_other_stage_created_it)
    exp_id = tracking._experiment_id(client, "bertpipe")
    assert len(lookups) == 2
    exp = client.get_experiment(exp_id)
    assert exp.name == "bertpipe"
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
