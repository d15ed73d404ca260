"""The code location loads as `dagster dev` loads it, and its schedules ask for the runs they should."""

import dagster as dg

from pipelines.definitions import defs
from pipelines.schedules import nightly_audit_schedule


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert repo.has_schedule_def("nightly_audit_schedule")
    assert repo.has_sensor_def("deploy_reaudit_sensor")


def test_nightly_audit_schedule_requests_the_audit():
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(instance=instance)
        data = nightly_audit_schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1 and nightly_audit_schedule.job_name == "audit_job"
    assert nightly_audit_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert nightly_audit_schedule.cron_schedule == "0 2 * * *"
