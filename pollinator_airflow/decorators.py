"""``@task.pollinator``: run a TaskFlow function's body remotely as a ColonyOS job.

The function's source and its JSON arguments go to the core's
``remote_function_job``; its JSON return value comes back as the task's XCom
``return_value`` (the full ``JobResult`` is pushed under the ``pollinator`` key),
the same in sync and deferrable mode. Everything the operator does (live logs,
deferrable waiting, re-attach, cancel) applies.

The source is captured when the operator is made (when the DAG file is
parsed, so the file is there), and module globals the body reads travel only
by the core's rule: literal data that does not look like a credential, or
names listed in ``ship=[...]`` (see :mod:`pollinator.run.remote`). A function
that cannot be shipped is a DAG import error naming the reason.

Arguments must be JSON (Airflow context objects such as ``ti`` cannot travel
to the remote process); the function must import what it uses inside its body.

    @task.pollinator(executor_names=["dev-hpc"], image="python:3.12")
    def evaluate(result_label: str) -> dict:
        return {"ok": True}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, Sequence

from airflow.sdk.bases.decorator import DecoratedOperator, TaskDecorator, task_decorator_factory

from pollinator_airflow.operators import PollinatorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pollinator.config import Settings
    from pollinator.run import Job, JobResult

RESULT_KEY = "pollinator"


class _PollinatorDecoratedOperator(DecoratedOperator, PollinatorOperator):
    """A ``PollinatorOperator`` whose job is "call this function remotely"."""

    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *PollinatorOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers, **PollinatorOperator.template_fields_renderers}
    custom_operator_name = "@task.pollinator"
    _requires_command = False

    def __init__(self, *, python_callable: Callable[..., Any], op_args: Optional[Sequence[Any]] = None,
                 op_kwargs: Optional[dict[str, Any]] = None, ship: Sequence[str] = (), **kwargs: Any) -> None:
        from pollinator.run.remote import capture, refuse_function_options

        refuse_function_options("@task.pollinator", kwargs)  # at parse time: a DAG import error naming them
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs)
        self.ship = list(ship)
        self.function_source = capture(python_callable, ship)  # now, while the DAG file is certainly there

    def build_job(self, settings: "Settings", token: str, context: "Context") -> "Job":
        from pollinator.run import remote_function_job

        options = self._options()
        options.setdefault("name", self.task_id)
        return remote_function_job(settings, self.python_callable, list(self.op_args), dict(self.op_kwargs),
                                   token=token, source=self.function_source, **options)

    def xcom_value(self, result: "JobResult", context: "Context") -> Any:
        context["ti"].xcom_push(key=RESULT_KEY, value=result.to_xcom())
        return result.return_value

    def execute_complete(self, context: "Context", event: dict[str, Any]) -> Any:
        return self._handle_output(return_value=super().execute_complete(context, event))


def pollinator_task(python_callable: Optional[Callable[..., Any]] = None, multiple_outputs: Optional[bool] = None,
                    **kwargs: Any) -> TaskDecorator:
    """Wrap a function into a ``PollinatorOperator`` that runs its body on a ColonyOS executor.

    Takes every ``PollinatorOperator`` argument (the core's job option names) except ``project_dir`` and
    what the function job sets itself (``cmd``, ``args``, ``source``, ``src_dir``), and ``ship=[...]``: module
    globals to upload with the function even though the implicit rule refuses them.
    """
    return task_decorator_factory(python_callable=python_callable, multiple_outputs=multiple_outputs,
                                  decorated_operator_class=_PollinatorDecoratedOperator, **kwargs)
