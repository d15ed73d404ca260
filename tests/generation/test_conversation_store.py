"""The conversation store: JSON files under its root, nothing outside it, prune keeps what rows point at."""

import pytest

from resources.conversation_store import ConversationStore


def test_files_round_trip_under_the_root_from_setting_or_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERSATION_STORE", str(tmp_path / "from-env"))
    assert ConversationStore().root_path() == tmp_path / "from-env"
    store = ConversationStore(root=str(tmp_path / "store"))
    size = store.write("job/1.json", {"turns": [{"role": "user", "content": "héllo"}]}, raw='{"raw": 1}')
    assert store.read("job/1.json")["turns"][0]["content"] == "héllo"
    assert (tmp_path / "store/job/1.json").stat().st_size == size
    assert (tmp_path / "store/job/1.json.raw").read_text() == '{"raw": 1}'
    assert sorted(p.name for p in (tmp_path / "store/job").iterdir()) == ["1.json", "1.json.raw"]


@pytest.mark.parametrize("relative", ["../escape.json", "/etc/passwd", "job/../../x.json", "a\\..\\b", ""])
def test_paths_outside_the_root_are_refused(tmp_path, relative):
    with pytest.raises(ValueError, match="not a path inside the conversation store"):
        ConversationStore(root=str(tmp_path)).write(relative, {})


def test_prune_keeps_referenced_files_and_their_raw_responses(tmp_path):
    store = ConversationStore(root=str(tmp_path))
    for name in ("1", "2", "3"):
        store.write(f"job/{name}.json", {}, raw="r")
    (tmp_path / "job/4.json.raw").write_text("r")  # what a killed writer leaves: its raw response,
    (tmp_path / "job/4.json").write_bytes(b'{"tu')  # its file half written, and no row
    assert store.prune("job", {"job/1.json"}) == 6
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["1.json", "1.json.raw"]
    assert store.prune("job", set()) == 2 and not (tmp_path / "job").exists()
    assert store.prune("never-written", set()) == 0
