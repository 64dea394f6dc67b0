"""The Ray backend of the run spine: connect to a cluster, run tasks, hand their results to the driver as they come.

Usage::

    from amsgrad_repro.cluster import Cluster

    with Cluster.connect(None) as cluster:            # None: a local Ray instance sized to this machine
        results = cluster.run(task, [(key, args), ...], num_cpus=1)
        for key, outcome in results:                # in the order they finish
            ...                                     # outcome is the task's return value, or a TaskFailed

What stays on the driver: the run directory, every TensorBoard event file and summary.json (tasks return what
they would have logged; no shared filesystem is needed), the progress bar and the signals. What goes to the
cluster: pure functions of a run's configuration and seed, so where a task runs changes no number.

Faults, and who handles them:

- a worker process that dies (killed, out of memory, node lost) is Ray's: the task is retried up to
  :data:`MAX_RETRIES` times, and its result is the same because the task is pure;
- an ordinary exception in a task is not retried (it would fail again): the outcome is a :class:`TaskFailed`
  with the error's text, and the caller marks that run failed;
- Ctrl-C or SIGTERM on the driver stops waiting and re-raises, so the caller writes the summary with what
  finished; the outstanding tasks end when the driver disconnects (Ray kills the workers of a finished job);
- a cluster that has gone (no node alive, or no answer) for ``timeout`` seconds is a :class:`ClusterLost`
  error, never an endless wait.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from .report import one_line
from .runs import BackendLost, TaskFailed, UsageError

#: how many times Ray re-runs a task whose worker process died
MAX_RETRIES = 3
#: default seconds the driver waits for a cluster with no live node before giving up (``--ray-timeout``)
DEFAULT_TIMEOUT = 120.0
#: seconds between two looks at the cluster's nodes while waiting for results
_CHECK_EVERY = 5.0


class ClusterLost(BackendLost):
    """The cluster stopped answering, or had no live node, for longer than the timeout."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, an optional extra: pip install -e '.[ray]' (or pip install ray)") from None
    return ray


#: what an HTTP/2 client sends first (RFC 9113, 3.4): the preface, then an empty SETTINGS frame
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
#: the most seconds the probe of a head's address waits for its answer
PROBE_SECONDS = 10.0


def _check_reachable(address: str, timeout: float) -> None:
    """A ``host:port`` that is not a Ray head is an error now, in one line, not an endless wait in ``ray.init``.

    A Ray head's address is its GCS server, which speaks gRPC, that is HTTP/2: given HTTP/2's client preface it
    answers with a SETTINGS frame. So the probe connects (bounded), sends the preface and waits (bounded, at most
    :data:`PROBE_SECONDS`) for the 9-byte frame header of a SETTINGS frame. Nothing listening, a server that stays
    silent, or one that answers something else (an HTTP/1 server's ``HTTP/1.1 400``) is a :class:`UsageError`
    saying which. (A gRPC server that is not Ray passes the probe; ``ray.init`` then gets the bound of
    :meth:`Cluster.connect`.)"""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--ray: {address!r} is not an address (use host:port, or auto, or nothing for local)")
    bound = min(timeout, PROBE_SECONDS)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=bound) as conn:
            conn.settimeout(bound)
            conn.sendall(_H2_PREFACE)
            answer = b""
            deadline = time.monotonic() + bound
            while len(answer) < 9 and time.monotonic() < deadline:
                conn.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = conn.recv(64)  # a SETTINGS frame's header is 9 bytes; more says what else answered
                if not chunk:
                    break
                answer += chunk
    except TimeoutError:
        raise UsageError(
            f"--ray: the server at {address} accepted a connection but did not answer as a Ray head (gRPC) "
            f"within {bound:g} s: is it a Ray cluster's head (the address `ray start --head` printed)?"
        ) from None
    except OSError as e:
        raise UsageError(f"--ray: no Ray cluster answers at {address} ({e.strerror or e})") from None
    if len(answer) < 9 or answer[3] != 0x04:
        said = answer.decode("latin-1")[:40].encode("unicode_escape").decode() if answer else "nothing"
        raise UsageError(
            f"--ray: the server at {address} is not a Ray head: it answered {said!r}, not gRPC's HTTP/2 "
            "(give the address `ray start --head` printed)"
        )


#: the least seconds joining a cluster may take before the driver gives up (``--ray-timeout`` if longer): Ray's own
#: start-up on a busy 2-core machine takes several seconds, and a wrong server must not hang it for ever
JOIN_SECONDS = 60.0


@contextlib.contextmanager
def _watchdog(seconds: float, address: str) -> Iterator[None]:
    """Within the block, ``seconds`` is the bound: past it the process says so in one line and exits with status 2
    (``ray.init`` can block in Ray's C++ core, where neither a timeout nor Ctrl-C reaches it). Nothing has been
    written by then: a cluster is joined before a run directory is claimed."""

    def give_up() -> None:
        line = one_line(
            f"--ray {address}: Ray did not connect within {seconds:g} s (a server answers there, but not as a Ray "
            "head would); nothing was written",
            "amsgrad_repro: error: ",
        )
        os.write(2, (line + "\n").encode(errors="replace"))
        os._exit(2)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


class Cluster:
    """A connection to Ray for one invocation. Use :meth:`connect` as a context manager: on exit it
    disconnects (and stops the local instance, if it started one)."""

    def __init__(self, ray, address: str, timeout: float, owned: bool = True) -> None:
        self.ray, self.address, self.timeout = ray, address, timeout
        self.owned = owned  # we connected, so we disconnect at exit
        self._nodes_seen: set[str] = set()  # node IDs seen alive while this invocation ran
        self._nodes_lost: list[str] = []  # of those, the ones that died, in the order we noticed
        self._tasks_by_node: dict[str, int] = {}  # node ID → results returned from it
        self._last_look = 0.0
        self._lock = threading.Lock()  # the node look runs in a thread that may outlive its wait

    @classmethod
    def connect(cls, address: str | None, timeout: float = DEFAULT_TIMEOUT) -> Cluster:
        """Start a local Ray instance (``address`` None: as many CPUs as this process may use) or join a running
        cluster (``"auto"``, or ``"host:port"`` of its head). If this process is already connected to Ray, that
        connection is used (and left open at exit). Raises :class:`UsageError` if Ray is not installed or
        nothing answers at the address. Our SIGINT/SIGTERM handlers survive Ray's start-up."""
        ray = _import_ray()
        if ray.is_initialized():  # this process is already connected (a notebook, a test module): use that
            return cls(ray, "connected", timeout, owned=False)
        if address not in (None, "auto"):
            _check_reachable(address, timeout)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=True)
        try:
            if address is None:
                cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
                # Ray starts its workers at nice 15; on a local instance, beside any other job, they then starve
                # (measured: 6 % of a core beside two busy processes, so a docs test ran for over 20 minutes).
                # A local instance is this invocation's own: its workers get the driver's priority (nice 0), as
                # Ray's own job manager gives its drivers. A user's RAY_worker_niceness wins.
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(num_cpus=cpus, **kwargs)  # the CPUs this process may use (a container's, a taskset's)
            else:
                with _watchdog(max(timeout, JOIN_SECONDS), address):
                    ray.init(address=address, **kwargs)
        except ConnectionError as e:
            hint = (
                "" if address is None else " (a cluster with token authentication needs RAY_AUTH_MODE=token here too)"
            )
            raise UsageError(f"--ray {address}: {str(e).splitlines()[0]}{hint}") from None
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)  # Ray's driver start-up installs its own SIGTERM handler (sys.exit)
        return cls(ray, "local" if address is None else address, timeout)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        if self.owned:
            self.ray.shutdown()

    def cpus(self) -> int:
        """The cluster's CPUs now (what the chunk sizes are planned for)."""
        return int(self.ray.cluster_resources().get("CPU", 1))

    def describe(self) -> str:
        """One line: where, and what it has."""
        res = self.ray.cluster_resources()
        alive = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        gpus = f", {res['GPU']:g} GPU" if res.get("GPU") else ""
        return f"Ray {self.ray.__version__} ({self.address}): {alive} node(s), {res.get('CPU', 0):g} CPU{gpus}"

    def run(
        self,
        task: Callable,
        jobs: Sequence[tuple[object, tuple]],
        num_cpus: float = 1,
        num_gpus: float = 0,
    ) -> Iterator[tuple[object, object]]:
        """Submit ``task(*args)`` for every ``(key, args)`` and yield ``(key, result)`` as each finishes, with
        ``result`` a :class:`TaskFailed` if the task raised. Ctrl-C/SIGTERM (a KeyboardInterrupt here) or
        :class:`ClusterLost` propagate; the tasks not yet finished end when the connection closes (on a
        connection this object did not open, they are cancelled). A task that no live node could
        hold is a :class:`UsageError` before anything is submitted."""
        self._check_fits(num_cpus, num_gpus)
        self._alive()
        remote = self.ray.remote(_on_node).options(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_retries=MAX_RETRIES,
            retry_exceptions=False,
            name=task.__name__,  # what `ray list tasks` and the worker's process title (ray::<name>) say
        )
        pending = {remote.remote(task, *args): key for key, args in jobs}
        last_alive = time.monotonic()
        try:
            while pending:
                done, _ = self.ray.wait(list(pending), num_returns=1, timeout=_CHECK_EVERY)
                if done and time.monotonic() - self._last_look > _CHECK_EVERY:
                    self._alive()  # notes lost nodes while results flow (it runs on its own without results)
                if not done:
                    if self._alive():
                        last_alive = time.monotonic()
                    elif time.monotonic() - last_alive > self.timeout:
                        raise ClusterLost(
                            f"the Ray cluster ({self.address}) has had no live node for {self.timeout:g} s "
                            f"with {len(pending)} task(s) outstanding (--ray-timeout)"
                        )
                    continue
                last_alive = time.monotonic()
                ref = done[0]
                key = pending.pop(ref)
                try:
                    node, result = self.ray.get(ref)
                    self._tasks_by_node[node] = self._tasks_by_node.get(node, 0) + 1
                except self.ray.exceptions.RayError as e:
                    result = TaskFailed(_one_line(e))
                yield key, result
            self._alive()
        except BaseException:
            if not self.owned:  # someone else's connection stays open: cancel our tasks on it
                for ref in pending:
                    try:
                        self.ray.cancel(ref, force=True)
                    except Exception:  # already finished, or the cluster is gone: nothing to cancel
                        pass
            # On our own connection the tasks end when we disconnect (__exit__: Ray kills a finished job's
            # workers), after the caller has written its summary. We do not ray.cancel them here: Ray 2.60's
            # driver can abort (a failed internal check, "Tried to complete task that was not pending") when a
            # force-cancelled task's reply is still in flight, and it would take the unwritten summary with it.
            raise

    def report(self) -> dict:
        """What the cluster did for this invocation, for summary.json: the nodes seen alive, the nodes lost while
        it ran (their tasks were retried on the others, up to :data:`MAX_RETRIES` times), and how many task
        results each node returned (node IDs cut to 12 hex digits, as ``ray list nodes`` shows them)."""
        with self._lock:
            return {
                "address": self.address,
                "nodes_seen": sorted(self._nodes_seen),
                "nodes_lost": list(self._nodes_lost),
                "results_by_node": dict(sorted(self._tasks_by_node.items())),
            }

    def lost_line(self) -> str | None:
        """One line for the end of a run that lost nodes, else None."""
        with self._lock:
            lost, seen = list(self._nodes_lost), len(self._nodes_seen)
        if not lost:
            return None
        return (
            f"Ray: lost {len(lost)} of {seen} node(s) while running "
            f"({', '.join(lost)}); their tasks were retried on the others (summary.json: ray_nodes)"
        )

    def _check_fits(self, num_cpus: float, num_gpus: float) -> None:
        """A task no live node can hold would wait for ever: say so now (:class:`UsageError`)."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if any(r.get("CPU", 0) >= num_cpus and r.get("GPU", 0) >= num_gpus for r in nodes):
            return
        largest = max((r.get("CPU", 0) for r in nodes), default=0)
        gpus = max((r.get("GPU", 0) for r in nodes), default=0)
        need = f"{num_cpus:g} CPU" + (f" and {num_gpus:g} GPU" if num_gpus else "")
        raise UsageError(
            f"--ray: each task asks for {need}, but no node of the cluster has that much (the largest has "
            f"{largest:g} CPU, {gpus:g} GPU): lower --threads, or add bigger nodes"
        )

    def _alive(self) -> bool:
        """Whether the cluster answers within a few seconds and has a live node with a CPU. On the way it notes
        the nodes alive now, and any seen alive before that has died since (a lost node: Ray retries its tasks
        elsewhere, and :meth:`report` says so). The question runs in a thread: a cluster that has gone can make
        Ray's call block for a minute, and then abort the process, so the driver never waits on it."""
        answer: list[bool] = []
        self._last_look = time.monotonic()

        def ask() -> None:
            try:
                nodes = self.ray.nodes()
            except Exception:
                answer.append(False)
                return
            with self._lock:
                for n in nodes:
                    node = n.get("NodeID", "")[:12]
                    if n.get("Alive"):
                        self._nodes_seen.add(node)
                    elif node in self._nodes_seen and node not in self._nodes_lost:
                        self._nodes_lost.append(node)
            answer.append(any(n.get("Alive") and n.get("Resources", {}).get("CPU") for n in nodes))

        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        thread.join(_CHECK_EVERY)
        return bool(answer and answer[0])


def _on_node(task: Callable, *args) -> tuple[str, object]:
    """What a Ray worker runs: ``task(*args)``, and the ID of the node it ran on (cut to 12 hex digits)."""
    import ray

    return ray.get_runtime_context().get_node_id()[:12], task(*args)


def _one_line(error: BaseException) -> str:
    """A Ray error as one line: the task's own exception if it raised one, else Ray's reason."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse's type for ``--ray-timeout``)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_ray_flags(g) -> None:
    """``--ray [ADDRESS]`` and ``--ray-timeout``, the same in every command that runs more than one run."""
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: no ADDRESS starts a local Ray instance on the CPUs this process may use; auto or "
        "host:port joins a running cluster (needs the ray extra: pip install -e '.[ray]'; see docs/ray.md)",
    )
    g.add_argument(
        "--ray-timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="with --ray: give up when the cluster has had no live node, or has not answered, for this long",
    )


def connect(flag: str, timeout: float = DEFAULT_TIMEOUT) -> Cluster:
    """:meth:`Cluster.connect` for a ``--ray`` value: "local" starts a local instance, anything else is an
    address. Raises :class:`UsageError` for a timeout that is not a positive number."""
    if not (timeout > 0 and timeout != float("inf")):
        raise UsageError(f"--ray-timeout must be a positive number of seconds, got {timeout:g}")
    return Cluster.connect(None if flag == "local" else flag, timeout)
