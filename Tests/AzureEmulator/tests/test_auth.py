"""Every way in is checked: a wrong key, a tampered, expired or too-weak SAS,
and bearer tokens from the emulator's Entra ID endpoint."""
import base64
import datetime
import json
import urllib.error
import urllib.parse
import urllib.request

import azure.batch.models as bm
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import BlobClient, BlobSasPermissions, ContainerSasPermissions, generate_blob_sas, generate_container_sas

from conftest import CLIENT_ID, CLIENT_SECRET, STORAGE, STORAGE_KEY, TENANT, batch_client, blob_service

WRONG = base64.b64encode(b"not-the-key-not-the-key-not-the-k").decode()


def test_batch_wrong_key_is_403(emulator):
    with pytest.raises(HttpResponseError) as e:
        list(batch_client(emulator.url, key=WRONG).list_pools())
    assert e.value.status_code == 403
    assert e.value.error.code == "AuthenticationFailed"


def test_blob_wrong_key_is_403(emulator):
    with pytest.raises((HttpResponseError, ClientAuthenticationError)) as e:
        blob_service(emulator.url, key=WRONG).create_container("c1")
    assert e.value.status_code == 403
    assert e.value.error_code == "AuthenticationFailed"


def _sas_blob(emulator, **kw):
    blobs = blob_service(emulator.url)
    blobs.create_container("sas")
    blobs.get_blob_client("sas", "f.txt").upload_blob(b"secret data")
    expiry = kw.pop("expiry", datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    sas = generate_blob_sas(STORAGE, "sas", "f.txt", account_key=STORAGE_KEY, permission=kw.pop("permission", BlobSasPermissions(read=True)),
                            expiry=expiry)
    return f"{emulator.url}/{STORAGE}/sas/f.txt", sas


def _get(url):
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_sas_grants_read(emulator):
    url, sas = _sas_blob(emulator)
    assert _get(f"{url}?{sas}") == (200, b"secret data")


def test_tampered_sas_is_403(emulator):
    url, sas = _sas_blob(emulator)
    params = dict(urllib.parse.parse_qsl(sas))
    sig = params["sig"]
    params["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    status, body = _get(f"{url}?{urllib.parse.urlencode(params)}")
    assert status == 403 and b"AuthenticationFailed" in body
    params["sig"] = sig
    params["sp"] = "rw"       # widening the permissions breaks the signature too
    assert _get(f"{url}?{urllib.parse.urlencode(params)}")[0] == 403


def test_expired_sas_is_403(emulator):
    url, sas = _sas_blob(emulator, expiry=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1))
    status, body = _get(f"{url}?{sas}")
    assert status == 403 and b"expired" in body


def test_read_only_sas_cannot_write(emulator):
    blob_service(emulator.url).create_container("readonly")
    sas = generate_container_sas(STORAGE, "readonly", account_key=STORAGE_KEY, permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    client = BlobClient.from_blob_url(f"{emulator.url}/{STORAGE}/readonly/new.txt?{sas}")
    with pytest.raises(HttpResponseError) as e:
        client.upload_blob(b"x")
    assert e.value.status_code == 403


def _token(emulator, secret=CLIENT_SECRET, scope="https://batch.core.windows.net/.default"):
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret,
                                   "scope": scope}).encode()
    try:
        with urllib.request.urlopen(f"{emulator.url}/{TENANT}/oauth2/v2.0/token", data=form) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _bearer_get(url, token):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    return _get(req)


def test_entra_client_credentials_tokens(emulator):
    status, body = _token(emulator)
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert _bearer_get(f"{emulator.url}/pools?api-version=2025-06-01", body["access_token"])[0] == 200
    # A Batch token does not open Blob, and a Blob token does not open Batch.
    blob_service(emulator.url).create_container("tok")
    assert _bearer_get(f"{emulator.url}/{STORAGE}/tok?restype=container&comp=list", body["access_token"])[0] == 403
    _, storage = _token(emulator, scope="https://storage.azure.com/.default")
    assert _bearer_get(f"{emulator.url}/{STORAGE}/tok?restype=container&comp=list", storage["access_token"])[0] == 200
    assert _bearer_get(f"{emulator.url}/pools?api-version=2025-06-01", storage["access_token"])[0] == 403
    # A token never issued is refused as the service refuses one: 401 with a challenge (test_failures.py).
    assert _bearer_get(f"{emulator.url}/pools?api-version=2025-06-01", "forged")[0] == 401


def test_wrong_client_secret_gets_no_token(emulator):
    status, body = _token(emulator, secret="wrong")
    assert status == 401 and body["error"] == "invalid_client"


class EmulatorCredential:
    """A TokenCredential over the emulator's client-credentials endpoint (what
    azure-identity's ClientSecretCredential does against Entra ID)."""

    def __init__(self, url):
        self.url = url

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                       "client_secret": CLIENT_SECRET, "scope": scopes[0]}).encode()
        with urllib.request.urlopen(f"{self.url}/{TENANT}/oauth2/v2.0/token", data=form) as r:
            body = json.loads(r.read())
        return AccessToken(body["access_token"], int(datetime.datetime.now().timestamp()) + body["expires_in"])


def test_user_delegation_sas_reads_without_the_account_key(emulator):
    # The data owner uploads with the key; a reader gets a user delegation
    # key with Entra ID and signs a SAS with it, as azure-storage-blob does.
    blobs = blob_service(emulator.url)
    blobs.create_container("udsas")
    blobs.get_blob_client("udsas", "f.txt").upload_blob(b"delegated")
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobServiceClient

    class LoopbackTransport(RequestsTransport):
        """The SDK sends Bearer tokens to https URLs only; the emulator is
        loopback http, so the scheme is switched as the request leaves."""
        def send(self, request, **kwargs):
            request.url = request.url.replace("https://", "http://", 1)
            return super().send(request, **kwargs)

    entra = BlobServiceClient(f"{emulator.url.replace('http://', 'https://')}/{STORAGE}", credential=EmulatorCredential(emulator.url),
                              transport=LoopbackTransport())
    now = datetime.datetime.now(datetime.timezone.utc)
    key = entra.get_user_delegation_key(now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=2))
    assert key.signed_oid == CLIENT_ID and key.signed_tid == TENANT and key.value
    sas = generate_blob_sas(STORAGE, "udsas", "f.txt", user_delegation_key=key, permission=BlobSasPermissions(read=True),
                            expiry=now + datetime.timedelta(hours=1))
    assert "skoid=" in sas and "sig=" in sas
    assert BlobClient.from_blob_url(f"{emulator.url}/{STORAGE}/udsas/f.txt?{sas}").download_blob().readall() == b"delegated"
    # Tampered: the signature no longer matches; past the key's expiry: refused.
    bad = sas.replace("sp=r", "sp=rw")
    with pytest.raises(HttpResponseError) as e:
        BlobClient.from_blob_url(f"{emulator.url}/{STORAGE}/udsas/f.txt?{bad}").download_blob().readall()
    assert e.value.status_code == 403
    old = entra.get_user_delegation_key(now - datetime.timedelta(hours=3), now - datetime.timedelta(hours=2))
    stale = generate_blob_sas(STORAGE, "udsas", "f.txt", user_delegation_key=old, permission=BlobSasPermissions(read=True),
                              expiry=now + datetime.timedelta(hours=1))
    with pytest.raises(HttpResponseError) as e:
        BlobClient.from_blob_url(f"{emulator.url}/{STORAGE}/udsas/f.txt?{stale}").download_blob().readall()
    assert e.value.status_code == 403
    # A key further ahead than 7 days is refused; the account key cannot ask for one.
    with pytest.raises(HttpResponseError) as e:
        entra.get_user_delegation_key(now, now + datetime.timedelta(days=8))
    assert e.value.status_code == 400
    with pytest.raises(HttpResponseError) as e:
        blobs.get_user_delegation_key(now, now + datetime.timedelta(hours=1))
    assert e.value.status_code == 403
