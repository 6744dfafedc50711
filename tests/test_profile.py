"""Profiles: a bad one is a one-line error naming the file and the field, never a traceback or a silent default."""

from __future__ import annotations

import pytest

from conformance.profile import ProfileError, load

GOOD = """
[target]
name = "example"
domain = "example.test"
host = "127.0.0.1"
port = 5222

[accounts.alice]
password = "a"
[accounts.bob]
password = "b"
[accounts.mallory]
username = "eve"
password_env = "IMPP_TEST_MALLORY_PW"

[timeouts]
positive = 2
"""


def write(tmp_path, text):
    path = tmp_path / "target.toml"
    path.write_text(text)
    return path


def test_a_good_profile_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPP_TEST_MALLORY_PW", "secret")
    profile = load(write(tmp_path, GOOD))
    assert profile.target.domain == "example.test" and profile.target.port == 5222
    assert profile.account("mallory").username == "eve" and profile.account("mallory").password == "secret"
    assert profile.timeouts.positive == 2.0 and profile.timeouts.close == 10.0
    assert profile.target.listeners == () and profile.target.anonymous_domain is None


def test_listeners_and_an_anonymous_domain_load(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPP_TEST_MALLORY_PW", "secret")
    text = GOOD.replace('port = 5222', 'port = 5222\nlisteners = ["tcp://127.0.0.1:5223", "ws://127.0.0.1:5280/ws"]'
                                       '\nanonymous_domain = "Anon.Example.Test."')
    profile = load(write(tmp_path, text))
    assert profile.target.listeners == ("tcp://127.0.0.1:5223", "ws://127.0.0.1:5280/ws")
    assert profile.target.anonymous_domain == "anon.example.test"


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('host = "127.0.0.1"', 'hots = "127.0.0.1"'), "unknown key 'target.hots'"),
    (lambda t: t.replace("port = 5222", 'port = "5222"'), "'target.port' must be an integer"),
    (lambda t: t.replace("port = 5222", "port = 70000"), "'target.port' must be between 1 and 65535"),
    (lambda t: t.replace('[accounts.bob]\npassword = "b"\n', ""), "missing account(s) [accounts.bob]"),
    (lambda t: t.replace('name = "example"\n', ""), "missing key 'target.name'"),
    (lambda t: t.replace("positive = 2", "positive = -1"), "'timeouts.positive' must be between"),
    (lambda t: t + "\n[extras]\nx = 1\n", "unknown section [extras]"),
    (lambda t: t.replace('domain = "example.test"', 'domain = "example.test"\nca_file = "nope.pem"'),
     "'target.ca_file'"),
    (lambda t: t.replace('[target]', '[target'), "not valid TOML"),
    (lambda t: t.replace('password = "a"', 'password = "a"\npassword_env = "X"'), "has both password and password_env"),
    (lambda t: t.replace('port = 5222', 'port = 5222\nlisteners = "tcp://h:1"'), "'target.listeners' must be a list"),
    (lambda t: t.replace('port = 5222', 'port = 5222\nlisteners = ["ftp://h:1"]'), "'target.listeners' entries"),
    (lambda t: t.replace('port = 5222', 'port = 5222\nlisteners = [5223]'), "'target.listeners' entries"),
    (lambda t: t + '\n[federation]\nport = 5269\nremote_domain = "remote.test"\n', "missing key 'federation.certificates'"),
    (lambda t: t + '\n[federation]\nport = 5269\nremote_domain = "r.test"\ncertificates = "nope"\n',
     "'federation.certificates'"),
    (lambda t: t + '\n[load]\nrate = 0\n', "'load.rate' must be above 0 and at most"),
    (lambda t: t + '\n[load]\nconnections = 1000000\n', "'load.connections' must be above 0 and at most"),
    (lambda t: t + '\n[load]\nsource = "localhost"\n', "'load.source' must be an IP address"),
    (lambda t: t + '\n[load]\nburst = 3\n', "unknown key 'load.burst'"),
])
def test_a_bad_profile_names_file_and_field(tmp_path, monkeypatch, change, message):
    monkeypatch.setenv("IMPP_TEST_MALLORY_PW", "secret")
    path = write(tmp_path, change(GOOD))
    with pytest.raises(ProfileError) as error:
        load(path)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text


def test_an_unset_password_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("IMPP_TEST_MALLORY_PW", raising=False)
    with pytest.raises(ProfileError, match="IMPP_TEST_MALLORY_PW"):
        load(write(tmp_path, GOOD))


def test_a_missing_file_is_a_profile_error(tmp_path):
    with pytest.raises(ProfileError, match="no such profile file"):
        load(tmp_path / "absent.toml")


def test_the_example_profile_in_the_repository_is_valid(monkeypatch):
    from pathlib import Path
    for variable in ("IMPP_ALICE_PASSWORD", "IMPP_BOB_PASSWORD", "IMPP_MALLORY_PASSWORD"):
        monkeypatch.setenv(variable, "x")
    profile = load(Path(__file__).resolve().parent.parent / "profiles" / "example.toml")
    assert profile.target.name


def test_a_federation_section_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPP_TEST_MALLORY_PW", "secret")
    (tmp_path / "peers").mkdir()
    text = GOOD + '\n[federation]\nport = 5269\nremote_domain = "Remote.Test"\ncertificates = "peers"\n'
    federation = load(write(tmp_path, text)).federation
    assert federation.port == 5269 and federation.remote_domain == "remote.test"
    assert federation.certificates == (tmp_path / "peers").resolve()


def test_a_load_section_bounds_the_floods(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPP_TEST_MALLORY_PW", "secret")
    assert load(write(tmp_path, GOOD)).load.source is None  # absent: defaults, from the usual address
    profile = load(write(tmp_path, GOOD + '\n[load]\nrate = 50\nduration = 2\nsource = "127.0.0.2"\n'))
    assert profile.load.rate == 50.0 and profile.load.duration == 2.0 and profile.load.source == "127.0.0.2"
    assert profile.load.connections == 300 and isinstance(profile.load.duration, float)


CLIENT = """
[target]
name = "a-client"
kind = "client"

[client]
command = ["./shim", "--verbose"]
timeout = 12

[timeouts]
fallback = 15
"""


def test_a_client_profile_names_its_shim_and_nothing_of_a_service(tmp_path):
    profile = load(write(tmp_path, CLIENT))
    assert profile.target.kind == "client" and profile.accounts == {}
    assert profile.client.command == (str(tmp_path / "shim"), "--verbose")  # a path next to the profile
    assert profile.client.timeout == 12.0 and profile.timeouts.fallback == 15.0


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('kind = "client"', 'kind = "server"'), "'target.kind' must be one of service, client"),
    (lambda t: t.replace('command = ["./shim", "--verbose"]', 'command = []'), "'client.command' must be a non-empty"),
    (lambda t: t.replace('command = ["./shim", "--verbose"]', 'command = [1]'), "'client.command' must be a non-empty"),
    (lambda t: t.replace("timeout = 12", "timeout = 0"), "'client.timeout' must be between"),
    (lambda t: t.replace('[client]\ncommand = ["./shim", "--verbose"]\ntimeout = 12\n', ""), "missing section [client]"),
    (lambda t: t + '\n[accounts.alice]\npassword = "a"\n', "[accounts] does not apply to a client IUT"),
    (lambda t: t.replace('kind = "client"', 'kind = "client"\ndomain = "x.test"'), "'target.domain' does not apply"),
    (lambda t: t.replace("timeout = 12", "timeout = 12\nshell = true"), "unknown key 'client.shell'"),
])
def test_a_bad_client_profile_names_file_and_field(tmp_path, change, message):
    path = write(tmp_path, change(CLIENT))
    with pytest.raises(ProfileError) as error:
        load(path)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text


def test_a_service_profile_with_a_client_section_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPP_TEST_MALLORY_PW", "secret")
    with pytest.raises(ProfileError, match=r"\[client\] describes a client IUT"):
        load(write(tmp_path, GOOD + '\n[client]\ncommand = ["x"]\n'))
