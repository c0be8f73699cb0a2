"""The callback that schedules topology evolution."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback


class DSTCallback(BaseCallback):
    """Triggers topology evolution (Algorithm 2) every ``evolution_interval`` (e) gradient steps.

    The same callback triggers the pruning steps of the Pruned-* algorithms; when they happen (the window of
    ``evolution_end`` or ``pruning_start``) is decided by the model's ``topology_schedule``.

    Stable-Baselines3 calls callbacks once per environment step, while Algorithm 1 evolves between gradient
    steps: right after the critic update (L15-L16) and after the actor update (L21-L22). The DST algorithms
    therefore call :meth:`on_gradient_step` at those two lines, and this callback decides from the
    gradient-step counter ``model._n_updates`` whether evolution is due. The schedule is thereby exact for any
    ``train_freq``/``gradient_steps``, and it resumes where it stopped after ``save``/``load`` because the
    counter is saved with the model.

    ``learn()`` of a DST algorithm adds one automatically; pass your own instance (alone or in a list with other
    callbacks) to set ``verbose``. With ``verbose=1`` each evolution is printed.
    """

    def on_gradient_step(self, network: str, steps_since_last_call: int = 1) -> bool:
        """Evolve ``network`` if a multiple of e was reached since this line last ran.

        :param network: ``"critic"`` or ``"actor"``.
        :param steps_since_last_call: gradient steps since the previous call for this network: 1 for critics,
            ``policy_delay`` (d) for the TD3 actor, which is evolved at the first actor update at or after each
            multiple of e (the same step as the paper's whenever d divides e).
        :return: whether the network was evolved.
        """
        model = self.model
        if not getattr(model, "evolution_interval", 0):
            return False
        # The schedule (every e steps, inside the window of evolution_end or of the pruning) is the model's.
        if not model._evolution_due(network, steps_since_last_call):  # type: ignore[attr-defined]
            return False
        changed = model._evolve_topology(network)  # type: ignore[attr-defined]
        if self.verbose >= 1:
            verb = "pruned" if model.updater.mode == "prune" else "evolved"  # type: ignore[attr-defined]
            print(
                f"DST: {verb} the {network} at gradient step {model._n_updates}: "
                f"{changed:.2%} of its connections changed"
            )
        return True

    def _on_step(self) -> bool:
        return True
