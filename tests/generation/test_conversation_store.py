"""The conversation store: bytes by key under its root, nothing outside it, deletes that leave no empty folder."""

import pytest

from resources.conversation_store import ConversationStore


def test_objects_round_trip_under_the_root_from_setting_or_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERSATION_STORE", str(tmp_path / "from-env"))
    assert ConversationStore().root_path() == tmp_path / "from-env"
    assert ConversationStore().bucket == "from-env"
    store = ConversationStore(root=str(tmp_path / "conversation-files"))
    assert store.bucket == "conversation-files"
    store.write("owner/c1/conversation.json", "héllo".encode())
    store.write("owner/c1/conversation.json", b"replaced")
    assert store.read("owner/c1/conversation.json") == b"replaced"
    assert (tmp_path / "conversation-files/owner/c1/conversation.json").read_bytes() == b"replaced"
    with pytest.raises(FileNotFoundError):
        store.read("owner/c2/conversation.json")


@pytest.mark.parametrize("key", ["../escape.json", "/etc/passwd", "job/../../x.json", "a\\..\\b", ""])
def test_keys_outside_the_root_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="not a path inside the conversation store"):
        ConversationStore(root=str(tmp_path)).write(key, b"{}")


def test_delete_removes_the_keys_given_and_the_folders_they_leave_empty(tmp_path):
    store = ConversationStore(root=str(tmp_path))
    for key in ("u/1/conversation.json", "u/1/conversation.json.raw", "u/2/conversation.json"):
        store.write(key, b"x")
    assert store.delete(["u/1/conversation.json", "u/1/conversation.json.raw", "u/3/conversation.json"]) == 2
    assert not (tmp_path / "u/1").exists() and (tmp_path / "u/2/conversation.json").exists()
    assert store.delete(["u/2/conversation.json"]) == 1
    assert not (tmp_path / "u").exists() and tmp_path.exists()  # the root itself stays
