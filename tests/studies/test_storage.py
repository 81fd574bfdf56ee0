from __future__ import annotations

import pytest

from tradeoff.studies import DEFAULT_STORAGE, StorageError, load_study, open_storage, resolve_storage_url


def test_precedence_cli_then_env_then_spec_then_default(monkeypatch) -> None:
    monkeypatch.delenv("TRADEOFF_STORAGE", raising=False)
    assert resolve_storage_url() == DEFAULT_STORAGE == "sqlite:///tradeoff.db"
    assert resolve_storage_url(spec="sqlite:///spec.db") == "sqlite:///spec.db"
    monkeypatch.setenv("TRADEOFF_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url(spec="sqlite:///spec.db") == "sqlite:///env.db"
    assert resolve_storage_url("sqlite:///cli.db", "sqlite:///spec.db") == "sqlite:///cli.db"


@pytest.mark.parametrize("url,match", [("tradeoff.db", "not a database URL"), ("mongodb://x/y", "not supported")])
def test_bad_urls_are_rejected(url: str, match: str) -> None:
    with pytest.raises(StorageError, match=match):
        resolve_storage_url(url)


def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path) -> None:
    path = tmp_path / "none.db"
    with pytest.raises(StorageError, match="tradeoff launch"):
        open_storage(f"sqlite:///{path}", must_exist=True)
    assert not path.exists()


def test_unknown_study_lists_the_known_ones(tmp_path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="alpha", storage=url)
    with pytest.raises(StorageError, match="no study named 'beta'.*studies there: alpha"):
        load_study("beta", url)


def test_sqlite_on_a_network_file_system_is_refused_naming_postgresql(tmp_path) -> None:
    from tradeoff.studies.storage import check_not_networked, filesystem_type

    mounts = f"server:/export {tmp_path} nfs4 rw,relatime 0 0\n/dev/root / ext4 rw 0 0\n"
    assert filesystem_type(tmp_path / "s.db", mounts) == "nfs4"
    with pytest.raises(StorageError, match=r"network file system \(nfs4\).*use PostgreSQL instead"):
        check_not_networked(f"sqlite:///{tmp_path / 's.db'}", mounts)
    check_not_networked(f"sqlite:///{tmp_path / 's.db'}", "/dev/root / ext4 rw 0 0\n")  # a local disk: fine
    check_not_networked("postgresql+psycopg://u:p@h/db", mounts)  # not a file at all
