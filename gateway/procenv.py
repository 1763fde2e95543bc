"""Environment variables that change how a program is loaded or started, not what it does.

A caller-supplied variable may reach only a process that runs inside isolation
(a sandbox, a container, an isolated package server). Processes the gateway runs
on the host itself (``bwrap``, ``prlimit``, ``sh``, the ``docker`` CLI, ``git``,
``npx``/``uvx`` when not isolated) always get a fixed environment of the gateway's
choosing. As a second line, the names below are refused wherever a caller or an
operator sets variables: each one makes a loader, an interpreter or a shell run
code the variable names (``LD_PRELOAD=/workspace/e.so``), so no legitimate tool
configuration needs them.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import InvalidInput

# Prefixes: dynamic loader (glibc, macOS), glibc tunables.
DANGEROUS_PREFIXES = ("LD_", "DYLD_", "GLIBC_TUNABLES")
DANGEROUS_NAMES = frozenset(
    {
        # libc: charset converters, locale and message catalogues loaded from a path
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "MALLOC_CHECK_",
        # shells: files sourced or code run at start-up
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "CDPATH",
        # interpreters: code or modules loaded before the program
        "NODE_OPTIONS",
        "NODE_PATH",
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONINSPECT",
        "PYTHONUSERBASE",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        # git and ssh run helpers named by these
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_EXEC_PATH",
        "GIT_PROXY_COMMAND",
        "GIT_ASKPASS",
        "GIT_CONFIG",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "SSH_ASKPASS",
    }
)
# Module search paths: code runs only when the program imports from them, so inside
# a sandbox (the caller's own machine) they are ordinary configuration.
SEARCH_PATHS = frozenset(
    {"PYTHONPATH", "PYTHONUSERBASE", "NODE_PATH", "PERL5LIB", "PERLLIB", "RUBYLIB"}
)


def dangerous(name: str, *, sandboxed: bool = False) -> bool:
    """Whether ``name`` makes a loader, shell or interpreter run code it points to.

    ``sandboxed``: the variable reaches only an isolated process of the caller's
    own, where module search paths are allowed.
    """
    upper = name.upper()
    if sandboxed and upper in SEARCH_PATHS:
        return False
    return upper in DANGEROUS_NAMES or upper.startswith(DANGEROUS_PREFIXES)


def check_env(env: Mapping[str, str], *, field: str = "env", sandboxed: bool = False) -> None:
    """Refuse malformed names and values and every :func:`dangerous` name (422).

    The message names the variable, never its value (values may be secrets).
    """
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise InvalidInput(
                f"invalid environment variable name {name!r} in {field}",
                code="invalid_env",
                errors=[{"field": f"{field}.{name}", "message": "invalid name or value"}],
            )
        if dangerous(name, sandboxed=sandboxed):
            raise InvalidInput(
                f"environment variable {name!r} is not allowed in {field}: it makes a "
                "loader, shell or interpreter run code from a path or string it names",
                code="env_not_allowed",
                errors=[{"field": f"{field}.{name}", "message": "not allowed"}],
            )
