"""TorchServe's log4j2 configuration: what reaches stdout (and so `kubectl logs`), and at what level.

TorchServe's own configuration prints several lines per request to stdout (access
log, worker "Looping backend response", "Backend response time", the worker's
"Backend received inference"), which we would read and re-log: CPU spent on every
request. Ours keeps TorchServe's log files as they are, sends start-up, state changes,
warnings and handler errors to stdout at TS_LOG_LEVEL, and keeps per-request lines
for DEBUG.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

# Lines TorchServe logs at INFO for every request or batch.
PER_REQUEST_PATTERN = (
    ".*(Looping backend response at|Backend response time|Backend received inference at"
    "|Flushing req\\.cmd|Getting requests from model|Sending response for jobId|result=\\[METRICS\\]).*"
)

_FILE = """
    <RollingFile name="{name}" fileName="${{env:{env}:-logs}}/{name}.log"
                 filePattern="${{env:{env}:-logs}}/{name}.%d{{dd-MMM}}.log.gz">
      <PatternLayout pattern="{pattern}"/>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/><TimeBasedTriggeringPolicy/></Policies>
      <DefaultRolloverStrategy max="5"/>
    </RollingFile>"""

_FULL = "%d{ISO8601} [%-5p] %t %c - %m%n"
_CONSOLE = "[%-5p] %t %c{1} - %m%n"  # our logger adds the time and a "torchserve" prefix
_SHORT = "%d{ISO8601} - %m%n"


def _log4j_level(level: str) -> str:
    return {"WARN": "warn", "ERROR": "error", "DEBUG": "debug", "TRACE": "trace"}.get(level, "info")


def render_log4j2(level: str) -> str:
    """log4j2.xml text for TorchServe at ``level`` (one of settings.LOG_LEVELS)."""
    log_level = _log4j_level(level)
    verbose = log_level in ("debug", "trace")
    console_filter = (
        "" if verbose
        else f'\n      <RegexFilter regex={quoteattr(PER_REQUEST_PATTERN)} onMatch="DENY" onMismatch="NEUTRAL"/>'
    )
    files = "".join(
        _FILE.format(name=name, env=env, pattern=pattern)
        for name, env, pattern in (
            ("access_log", "LOG_LOCATION", _SHORT),
            ("model_log", "LOG_LOCATION", _FULL),
            ("ts_log", "LOG_LOCATION", _FULL),
            ("model_metrics", "METRICS_LOCATION", _SHORT),
            ("ts_metrics", "METRICS_LOCATION", _SHORT),
        )
    )
    access_console = '<AppenderRef ref="STDOUT"/>' if verbose else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by kserve-torchserve for TS_LOG_LEVEL={level}. -->
<Configuration>
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="{_CONSOLE}"/>{console_filter}
    </Console>{files}
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="info" additivity="false">
      <AppenderRef ref="access_log"/>{access_console}
    </Logger>
    <Logger name="MODEL_LOG" level="{log_level}" additivity="false">
      <AppenderRef ref="model_log"/>
      <AppenderRef ref="STDOUT"/>
    </Logger>
    <Logger name="MODEL_METRICS" level="all" additivity="false">
      <AppenderRef ref="model_metrics"/>
    </Logger>
    <Logger name="TS_METRICS" level="all" additivity="false">
      <AppenderRef ref="ts_metrics"/>
    </Logger>
    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Logger name="org.pytorch.serve" level="{log_level}"/>
    <Root level="{log_level}">
      <AppenderRef ref="STDOUT"/>
      <AppenderRef ref="ts_log"/>
    </Root>
  </Loggers>
</Configuration>
"""
