"""A second callback beside the sentinel's: writes each standard logging record to
$RECORD_DUMP, so a test can check the events against the mapping of the very
records LiteLLM produced."""

import json
import os

from litellm.integrations.custom_logger import CustomLogger


class RecordDump(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    def _write(self, kwargs):
        with open(os.environ["RECORD_DUMP"], "a") as out:
            out.write(json.dumps(kwargs.get("standard_logging_object"), default=str) + "\n")


dump = RecordDump()
