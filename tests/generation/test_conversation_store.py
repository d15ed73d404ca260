"""The conversation store, a local folder or a bucket on a real S3 server on loopback: objects round-trip by key,
nothing outside the store, prune keeps what rows point at; S3 retries transient errors and leaks no credential."""

import http.client
import http.server
import threading
from collections.abc import Iterator

import boto3
import pytest

from resources.conversation_store import ConversationStore
from resources.s3_bucket import DELETE_BATCH, MAX_ATTEMPTS
from tests.conftest import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_BUCKET


def test_objects_round_trip_by_key(conversation_store):
    store = conversation_store
    size = store.write("owner/conv-1/conversation.json", {"turns": [{"role": "user", "content": "héllo"}]},
                       raw='{"raw": 1}')
    assert store.read("owner/conv-1/conversation.json")["turns"][0]["content"] == "héllo"
    assert len(store.read_bytes("owner/conv-1/conversation.json")) == size
    assert store.read_bytes("owner/conv-1/conversation.json.raw") == b'{"raw": 1}'
    assert store.exists("owner/conv-1/conversation.json") and not store.exists("owner/conv-2/conversation.json")
    assert store.keys_under("owner") == ["owner/conv-1/conversation.json", "owner/conv-1/conversation.json.raw"]
    with pytest.raises(FileNotFoundError):
        store.read("owner/conv-2/conversation.json")
    store.delete(["owner/conv-1/conversation.json.raw", "owner/conv-2/conversation.json"])  # one was never there
    assert store.keys_under("owner") == ["owner/conv-1/conversation.json"]


def test_store_names_its_bucket_and_says_whether_it_is_remote(conversation_store, tmp_path):
    if conversation_store.remote:
        assert conversation_store.bucket == S3_BUCKET
    else:
        assert conversation_store.bucket == "conversations" and conversation_store.root_path() == tmp_path / "conversations"


@pytest.mark.parametrize("key", ["../escape.json", "/etc/passwd", "job/../../x.json", "a\\..\\b", "", "."])
def test_keys_outside_the_store_are_refused(conversation_store, key):
    with pytest.raises(ValueError, match="not a path inside the conversation store"):
        conversation_store.write(key, {})


def test_prune_keeps_referenced_objects_and_their_raw_responses(conversation_store):
    store = conversation_store
    for name in ("1", "2", "3"):
        store.write(f"job/{name}/conversation.json", {}, raw="r")
    store.write("other-job/1/conversation.json", {})  # outside the pruned folder: never touched
    assert store.prune("job", {"job/1/conversation.json"}) == 4
    assert store.keys_under("job") == ["job/1/conversation.json", "job/1/conversation.json.raw"]
    assert store.prune("job", set()) == 2 and store.keys_under("job") == []
    assert store.prune("never-written", set()) == 0
    assert store.keys_under("other-job") == ["other-job/1/conversation.json"]


def test_local_prune_removes_what_a_killed_writer_left_and_the_folders_it_empties(tmp_path):
    store = ConversationStore(root=str(tmp_path))
    store.write("job/1/conversation.json", {})
    (tmp_path / "job/2").mkdir()
    (tmp_path / "job/2/conversation.json.raw").write_text("r")  # what a killed writer leaves: its raw response,
    (tmp_path / "job/2/conversation.json").write_bytes(b'{"tu')  # its file half written, and no row
    assert store.prune("job", {"job/1/conversation.json"}) == 2 and not (tmp_path / "job/2").exists()
    assert store.prune("job", set()) == 1 and not (tmp_path / "job").exists()


def test_location_comes_from_the_setting_or_the_environment(tmp_path, monkeypatch, s3_env):
    monkeypatch.setenv("CONVERSATION_STORE", str(tmp_path / "from-env"))
    assert ConversationStore().root_path() == tmp_path / "from-env" and not ConversationStore().remote
    monkeypatch.setenv("CONVERSATION_STORE", f"s3://{S3_BUCKET}/generated/")
    store = ConversationStore()
    store.write("u/c/conversation.json", {"a": 1})
    listed = boto3.session.Session().client("s3").list_objects_v2(Bucket=S3_BUCKET)["Contents"]
    assert [o["Key"] for o in listed] == ["generated/u/c/conversation.json"]  # under the prefix
    assert store.keys_under("u") == ["u/c/conversation.json"] and store.bucket == S3_BUCKET
    with pytest.raises(TypeError, match=f"bucket {S3_BUCKET}, not a folder"):
        store.root_path()


@pytest.mark.parametrize("location", ["s3://", "s3:///prefix", "s3://bucket?x=1"])
def test_malformed_s3_locations_are_refused(location):
    with pytest.raises(ValueError, match="expected s3://bucket"):
        ConversationStore(root=location).write("k.json", {})


def test_credentials_in_the_location_are_refused_without_echoing_them():
    with pytest.raises(ValueError) as refused:
        ConversationStore(root=f"s3://{AWS_ACCESS_KEY_ID}:{AWS_SECRET_ACCESS_KEY}@{S3_BUCKET}").write("k.json", {})
    assert "AWS_ACCESS_KEY_ID" in str(refused.value)
    assert AWS_SECRET_ACCESS_KEY not in str(refused.value) and "AKIAH14B" not in str(refused.value)


@pytest.mark.slow
def test_s3_prune_deletes_in_batches(s3_env):
    store = ConversationStore(root=f"s3://{S3_BUCKET}")
    client = boto3.session.Session().client("s3")
    for i in range(DELETE_BATCH + 5):  # straight to the bucket: a thousand uploads through the store add nothing
        client.put_object(Bucket=S3_BUCKET, Key=f"job/{i:05d}.json", Body=b"{}")
    assert len(store.keys_under("job")) == DELETE_BATCH + 5  # listed across pages
    assert store.prune("job", {"job/00007.json"}) == DELETE_BATCH + 4
    assert store.keys_under("job") == ["job/00007.json"]


class _FailingProxy(http.server.ThreadingHTTPServer):
    """A loopback proxy to the S3 server that answers the first `failures` requests 503 SlowDown."""

    def __init__(self, upstream: str, failures: int):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream.removeprefix("http://")
        self.failures, self.requests = failures, 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests += 1
            fail = self.server.requests <= self.server.failures
        if fail:
            error = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=30)
        upstream.request(self.command, self.path, body, dict(self.headers))
        reply = upstream.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_proxy(s3_env, monkeypatch) -> Iterator[_FailingProxy]:
    """The S3 server behind a proxy that fails its first requests; boto3 is pointed at the proxy."""
    proxy = _FailingProxy(s3_env["AWS_ENDPOINT_URL"], failures=0)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_transient_errors_are_retried(failing_proxy):
    failing_proxy.failures = 2
    store = ConversationStore(root=f"s3://{S3_BUCKET}")
    store.write("u/c/conversation.json", {"ok": True})
    assert failing_proxy.requests == 3
    assert store.read("u/c/conversation.json") == {"ok": True}


@pytest.mark.slow
def test_retries_are_bounded_and_the_error_says_what_failed(failing_proxy):
    failing_proxy.failures = MAX_ATTEMPTS + 10
    store = ConversationStore(root=f"s3://{S3_BUCKET}")
    with pytest.raises(Exception, match="SlowDown") as failed:
        store.write("u/c/conversation.json", {"ok": True})
    assert failing_proxy.requests == MAX_ATTEMPTS  # then it gives up: the item fails with this message
    assert AWS_SECRET_ACCESS_KEY not in str(failed.value) and AWS_ACCESS_KEY_ID not in str(failed.value)
