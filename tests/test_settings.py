"""Settings and ServeSettings: each option declared once, on the model, and everything else
(the command line, its help, the README's table, worker processes) generated from it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from bokeh.document import Document

from app_server import ConfigurationError, Settings, create_app
from app_server.cli import _parser, _to_environment, settings_from_args
from app_server.settings import ServeSettings, env_names, option_of, serve_only

README = Path(__file__).parent.parent / "README.md"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting comes from the environment the tests run in."""
    for name, info in ServeSettings.model_fields.items():
        for variable in env_names(name, info):
            monkeypatch.delenv(variable, raising=False)


def serve_parser() -> argparse.ArgumentParser:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = commands.choices["serve"]
    return parser


def option_actions() -> list[argparse.Action]:
    return [a for a in serve_parser()._actions if a.option_strings and a.dest != "help"]


def flag_of(name: str) -> str:
    return option_of(ServeSettings.model_fields[name]).flag or "--" + name.replace("_", "-")


def parse(*argv: str) -> ServeSettings:
    return settings_from_args(_parser().parse_args(["serve", "app.py", *argv]))


def hello(doc: Document) -> None:
    pass


def test_every_field_has_exactly_one_option_whose_help_names_its_variables() -> None:
    actions = option_actions()
    epilog = serve_parser().epilog or ""
    for name, info in ServeSettings.model_fields.items():
        if not option_of(info).command_line:  # a secret: environment only, named in the epilog
            assert all(f in epilog for f in [name, *env_names(name, info)])
            assert not [a for a in actions if flag_of(name) in a.option_strings]
            continue
        [action] = [a for a in actions if flag_of(name) in a.option_strings]
        for variable in env_names(name, info):
            assert variable in (action.help or ""), (name, variable)


# how the paths are read (bokeh serve's --args, --glob and --use-config): not settings
PATH_OPTIONS = {"--args", "--glob", "--use-config"}


def test_every_option_is_generated_from_a_field() -> None:
    flags = {flag_of(name) for name in ServeSettings.model_fields}
    for action in option_actions():
        assert action.option_strings[0] in flags | PATH_OPTIONS, action.option_strings


def test_the_parsers_defaults_are_the_models() -> None:
    for action in option_actions():
        assert action.default is None, "an option not given must not override the environment"
    defaults = {
        name: info.get_default(call_default_factory=True)
        for name, info in ServeSettings.model_fields.items()
    }
    assert parse().model_dump() == ServeSettings().model_dump() == defaults
    helps = {a.option_strings[0]: a.help or "" for a in option_actions()}
    assert "default: 5006;" in helps["--port"]
    assert "default: 37000;" in helps["--keep-alive"]
    assert "default: unsigned;" in helps["--session-ids"]
    assert "default: off;" in helps["--use-xheaders"]
    assert "default: on;" in helps["--security-headers"]


def test_bokehs_option_names_and_shapes() -> None:
    settings = parse(
        "--enable-xsrf-cookies", "--allow-websocket-origin", "a.com",
        "--allow-websocket-origin", "b.com", "--include-headers", "x-one", "x-two",
        "--exclude-cookies", "c1", "--exclude-cookies", "c2", "--cookie-secret", "s" * 32,
        "--max-sessions-per-app", "3", "--log-level", "debug",
    )  # fmt: skip
    assert settings.xsrf_cookies
    assert settings.allow_websocket_origin == ["a.com", "b.com"]
    assert settings.include_headers == ["x-one", "x-two"]
    assert settings.exclude_cookies == ["c1", "c2"]
    assert settings.cookie_secret is not None
    assert settings.cookie_secret.get_secret_value() == "s" * 32
    assert settings.max_sessions_per_app == 3 and settings.log_level == "debug"


def test_flags_override_the_environment_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_SERVER_USE_XHEADERS", "true")
    monkeypatch.setenv("BOKEH_SIGN_SESSIONS", "true")
    monkeypatch.setenv("BOKEH_SECRET_KEY", "k" * 32)
    assert parse().use_xheaders and parse().sign_sessions
    assert not parse("--no-use-xheaders").use_xheaders
    assert not parse("--session-ids", "unsigned").sign_sessions
    assert not parse("--no-security-headers").security_headers


def test_manage_process_memory_is_on_under_serve_and_off_for_create_app() -> None:
    assert parse().manage_process_memory
    assert not parse("--no-manage-process-memory").manage_process_memory
    assert not create_app(hello).state.server.settings.manage_process_memory
    assert create_app(hello, manage_process_memory=True).state.server.settings.manage_process_memory


@pytest.mark.parametrize("name", serve_only())
def test_a_serve_only_option_given_to_create_app_says_what_to_do(name: str) -> None:
    value = ServeSettings.model_fields[name].default
    with pytest.raises(ConfigurationError, match=rf"{name} is a setting of `app-server serve`"):
        create_app(hello, **{name: value})
    with pytest.raises(ConfigurationError, match=re.escape(f"app-server serve {flag_of(name)}")):
        create_app(hello, Settings(), **{name: value})


def test_the_messages_name_the_asgi_servers_own_option() -> None:
    with pytest.raises(ConfigurationError, match="uvicorn --ws-ping-interval"):
        create_app(hello, keep_alive=1000)
    with pytest.raises(ConfigurationError, match="uvicorn --port"):
        create_app(hello, port=8000)


def test_create_app_uses_the_serve_settings_it_is_given() -> None:
    settings = ServeSettings(port=8123)
    assert create_app(hello, settings).state.server.settings is settings
    merged = create_app(hello, settings, prefix="dash").state.server.settings
    assert isinstance(merged, ServeSettings)
    assert (merged.port, merged.prefix, merged.manage_process_memory) == (8123, "/dash", True)


def test_bad_values_are_configuration_errors_that_name_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="port"):
        parse("--port", "70000")
    with pytest.raises(ConfigurationError, match="num_threads"):
        create_app(hello, num_threads=0)
    with pytest.raises(ConfigurationError, match="prefx: no such setting"):
        create_app(hello, prefx="/x")


def test_generic_variable_names_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment's own SECRET_KEY (Django, Flask) must not become Bokeh's."""
    monkeypatch.setenv("SECRET_KEY", "someone else's")
    monkeypatch.setenv("AUTH_MODULE", "elsewhere.py")
    assert Settings().secret_key is None and Settings().auth_module is None
    monkeypatch.setenv("BOKEH_SECRET_KEY", "k" * 32)
    assert Settings().secret_key_bytes == b"k" * 32
    assert Settings(secret_key="x" * 32).secret_key_bytes == b"x" * 32  # keywords: field names


def test_worker_processes_rebuild_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOKEH_SECRET_KEY", "k" * 32)
    settings = parse(
        "--port", "8001", "--allow-websocket-origin", "a.com", "--session-ids",
        "external-signed", "--include-headers", "x-one", "x-two", "--no-security-headers",
        "--num-procs", "2", "--log-format", "json",
    )  # fmt: skip
    for variable, value in _to_environment(settings, {"/app": "app.py"}).items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("BOKEH_SECRET_KEY")
    assert ServeSettings() == settings


def readme_options() -> set[str]:
    section = README.read_text().split("## The command line", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    return {flag for row in rows for flag in re.findall(r"`(--[a-z-]+)", row.split(" | ")[0])}


def test_the_readme_table_lists_every_option_the_parser_has() -> None:
    listed = readme_options()
    known = {flag for action in option_actions() for flag in action.option_strings}
    assert listed <= known, f"the README lists options the parser lacks: {listed - known}"
    missing = [a.option_strings[0] for a in option_actions() if not listed & set(a.option_strings)]
    assert not missing, f"the README's table lacks {missing}"


def test_trusted_proxies_are_addresses_or_networks_given_with_commas() -> None:
    assert Settings(forwarded_allow_ips="10.0.0.5, 10.1.0.0/16").forwarded_allow_ips == [
        "10.0.0.5",
        "10.1.0.0/16",
    ]
    assert Settings(forwarded_allow_ips=["::1,127.0.0.1", "*"]).forwarded_allow_ips == [
        "::1",
        "127.0.0.1",
        "*",
    ]
    with pytest.raises(ConfigurationError, match=r"'proxy\.local' is not an address"):
        create_app(Document, forwarded_allow_ips="proxy.local")
