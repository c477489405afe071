"""Blob behaviour the daemon relies on, through azure-storage-blob."""
import base64
import hashlib
import os

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError

from conftest import blob_service


def test_create_twice_is_resource_exists(emulator):
    blobs = blob_service(emulator.url)
    blobs.create_container("dup")
    with pytest.raises(ResourceExistsError) as e:
        blobs.create_container("dup")
    assert e.value.error_code == "ContainerAlreadyExists"


def test_upload_without_overwrite_is_refused_when_the_blob_exists(emulator):
    # upload_blob(overwrite=False) sends If-None-Match: *, which batchd uses
    # to put a new input in one request.
    blobs = blob_service(emulator.url)
    blobs.create_container("once")
    client = blobs.get_blob_client("once", "a.txt")
    client.upload_blob(b"first")
    with pytest.raises(ResourceExistsError) as e:
        client.upload_blob(b"second")
    assert e.value.error_code == "BlobAlreadyExists"
    assert client.download_blob().readall() == b"first"
    big = blobs.get_blob_client("once", "big.bin")
    big._config.max_single_put_size = 1024
    big._config.max_block_size = 1024
    big.upload_blob(b"x" * 3000)
    with pytest.raises(ResourceExistsError):
        big.upload_blob(b"y" * 3000)
    etag = client.get_blob_properties().etag
    with pytest.raises(ResourceModifiedError):
        client.upload_blob(b"third", overwrite=True, etag="\"not-it\"", match_condition=MatchConditions.IfNotModified)
    client.upload_blob(b"third", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert client.download_blob().readall() == b"third"


def test_blocks_sent_with_content_md5_are_checked(emulator):
    blobs = blob_service(emulator.url)
    blobs.create_container("checked")
    client = blobs.get_blob_client("checked", "data.bin")
    client._config.max_single_put_size = 1024
    client._config.max_block_size = 1024
    data = os.urandom(2500)
    client.upload_blob(data, validate_content=True)   # each Put Block carries its Content-MD5
    assert client.download_blob().readall() == data
    with pytest.raises(HttpResponseError) as e:
        client.stage_block("YmxvY2stMDAwMDAx", b"payload", headers={"Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()})
    assert e.value.error_code == "Md5Mismatch"


def test_large_upload_in_blocks_and_ranged_download(emulator):
    blobs = blob_service(emulator.url)
    blobs.create_container("big")
    data = os.urandom(3 * 1024 * 1024 + 123)
    client = blobs.get_blob_client("big", "data.bin")
    client._config.max_single_put_size = 1024 * 1024
    client._config.max_block_size = 1024 * 1024
    client.upload_blob(data, max_concurrency=2)
    stats = emulator.admin("stats")["requests"]
    assert stats["put.block"] == 4 and stats["put.blocklist"] == 1
    props = client.get_blob_properties()
    assert props.size == len(data)
    assert props.etag
    part = client.download_blob(offset=1000, length=5000).readall()
    assert part == data[1000:6000]
    client._config.max_chunk_get_size = 1024 * 1024
    client._config.max_single_get_size = 1024 * 1024
    assert hashlib.sha256(client.download_blob(max_concurrency=3).readall()).digest() == hashlib.sha256(data).digest()


def test_uncommitted_blocks_are_listed_until_committed(emulator):
    blobs = blob_service(emulator.url)
    blobs.create_container("blocks")
    client = blobs.get_blob_client("blocks", "resumable.bin")
    ids = [f"{i:08d}" for i in range(3)]
    client.stage_block(ids[0], b"a" * 10)
    client.stage_block(ids[1], b"b" * 10)
    committed, uncommitted = client.get_block_list("all")
    assert committed == [] and sorted(b.id for b in uncommitted) == ids[:2]
    client.stage_block(ids[2], b"c" * 10)
    client.commit_block_list(ids)
    assert client.download_blob().readall() == b"a" * 10 + b"b" * 10 + b"c" * 10


def test_empty_blob_downloads(emulator):
    blobs = blob_service(emulator.url)
    blobs.create_container("empty")
    client = blobs.get_blob_client("empty", "zero")
    client.upload_blob(b"")
    assert client.download_blob().readall() == b""


def test_listing_with_prefix_delimiter_and_paging(emulator):
    blobs = blob_service(emulator.url)
    container = blobs.create_container("list")
    for name in ["a/1", "a/2", "a/b/3", "c/4", "top"]:
        container.upload_blob(name, b"x")
    assert [b.name for b in container.list_blobs(name_starts_with="a/")] == ["a/1", "a/2", "a/b/3"]
    assert [b.name for b in container.walk_blobs(delimiter="/")] == ["a/", "c/", "top"]
    pages = list(container.list_blobs(results_per_page=2).by_page())
    assert [[b.name for b in page] for page in pages] == [["a/1", "a/2"], ["a/b/3", "c/4"], ["top"]]


def test_if_match_guards_reads_of_a_replaced_blob(emulator):
    blobs = blob_service(emulator.url)
    blobs.create_container("etags")
    client = blobs.get_blob_client("etags", "f")
    client.upload_blob(b"first")
    etag = client.get_blob_properties().etag
    assert client.download_blob(offset=0, length=3, etag=etag, match_condition=MatchConditions.IfNotModified).readall() == b"fir"
    client.upload_blob(b"second", overwrite=True)
    with pytest.raises(ResourceModifiedError) as e:
        client.download_blob(offset=0, length=3, etag=etag, match_condition=MatchConditions.IfNotModified).readall()
    assert e.value.error_code == "ConditionNotMet"
