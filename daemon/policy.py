"""The policy engine: turns one tool call into a :class:`Verdict` (allow, approve or deny).

Order of evaluation; the first step that matches decides:

1. **Rules**, the selected server's first, then the global ones, each in file order. A rule
   matches when every part it has matches: ``tool`` (glob on the whole normalized name) or
   ``tool_regex``, every ``args`` condition (:mod:`daemon.conditions`), and ``annotations``.
2. **Block keywords** (global list, then the server's): a keyword contained in the normalized
   tool name, or in its :func:`~daemon.normalize.name_words` form, means *approve*.
3. **Trusted hints**, only with ``trust_annotations`` and for a listed tool: a declared
   ``readOnlyHint: true`` means *allow*, else a declared ``destructiveHint: true`` *approve*; a
   hint the server left out decides nothing here.
4. **Allow prefixes** (global list, then the server's): a normalized name starting with one is
   *allowed*; a prefix that ends in a separator (``get_``, ``get-``) also matches whole leading
   words, so ``get_`` allows ``get-sum`` and ``getSum`` but not ``getaway``.
5. **default_action**: the server's if it sets one, else the global one.

Deliberate difference from the seed, which tried allow prefixes first: a block keyword beats an
allow prefix, so ``get_and_delete_all`` needs approval instead of running.

Everything is matched in :func:`~daemon.normalize.normalize` form (NFKC, invisible characters
removed, case folded, look-alike letters folded, accents removed), so ``ＤＥＬＥＴＥ_user``,
``de<ZWSP>lete_user``, ``dеlete_user`` (Cyrillic ``е``) and ``délete_user`` all hit ``delete``.

Annotations are the hints a server gave for the tool in ``tools/list``. They are believed only
with ``trust_annotations`` on the server section and only for a tool that was listed; otherwise
the tool counts as unannotated and gets the MCP spec's defaults (``readOnlyHint`` false,
``destructiveHint`` true, ``idempotentHint`` false, ``openWorldHint`` true), which is the
cautious reading: a server that lies cannot talk its way past a rule.

Speed: the configuration is compiled once, and what depends on the tool name alone (the rules
that could match, and steps 2, 4 and 5) is cached per name, so a call costs a lookup plus its rules'
argument conditions. The compiled rules and name entries, and :class:`Verdict`, are in
:mod:`daemon.compiled_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping

from daemon.compiled_rules import _PHRASE, Verdict, _decision, _NameEntry, _Rule, _shown
from daemon.conditions import Args, norm_key
from daemon.config import Action, PolicyFile, load_config
from daemon.normalize import name_words, normalize

__all__ = ["Policy", "Verdict", "compile_policy", "load_policy"]

#: What the MCP spec assumes about a tool that gave no annotations.
SPEC_DEFAULT_HINTS: Mapping[str, bool] = {
    "readOnlyHint": False,
    "destructiveHint": True,
    "idempotentHint": False,
    "openWorldHint": True,
}
# Names and keys longer than this skip the caches: an agent could otherwise pin megabytes in them.
_CACHEABLE = 512
_CACHE_SIZE = 4096


class Policy:
    """A compiled policy for one server section (or the global section alone).

    Attributes:
        server_name: The ``--name`` this policy was compiled for, or ``None``.
        otp_attempt_count: Wrong codes allowed before a pending action is locked.
        otp_length: Digits in an approval code.
        otp_ttl_seconds: Seconds an approval code stays valid.
        trust_annotations: Whether the server's tool annotations are believed.
        new_tools: ``quarantine`` or ``accept``: what becomes of a tool a known server lists anew.
        elicitation: Whether ``approve_via_elicitation`` is on for this server (see
            :meth:`approves_via_elicitation`).
        warnings: Problems worth telling the user that do not stop the policy from working.
    """

    def __init__(self, cfg: PolicyFile, server_name: str | None) -> None:
        """Compile ``cfg`` for ``server_name``; prefer :func:`compile_policy`."""
        g = cfg.global_
        server = cfg.servers.get(server_name) if server_name is not None else None
        self.server_name = server_name
        #: The policy's server section names (what ``--name`` may select).
        self.server_sections = list(cfg.servers)
        self.warnings: tuple[str, ...] = ()
        if server_name is not None and server is None:
            from daemon.userconfig import unknown_name

            warning = unknown_name(server_name, list(cfg.servers), "the policy")
            self.warnings = (warning,) if warning else ()
        where = f"servers.{server_name}"
        sections = [(where, server), ("global", g)] if server is not None else [("global", g)]
        self._rules = tuple(
            _Rule.compile(rule, f"{label}.rules[{i}]")
            for label, section in sections
            for i, rule in enumerate(section.rules)
        )
        # Approved rules ("always" from the console): they only ever turn approve into allow.
        self._approved = tuple(
            _Rule.compile(rule, f"{label}.approved[{i}]")
            for label, section in sections
            for i, rule in enumerate(section.approved)
        )
        self._keywords: dict[str, str] = {}  # normalized word -> section that listed it first
        self._prefixes: dict[str, str] = {}
        # The same words in name_words() form: a keyword's, and a prefix's if it ends with a
        # separator ("get_", "get-"): such a prefix matches whole leading words of the name.
        self._keyword_words: dict[str, str] = {}
        self._prefix_words: dict[str, str | None] = {}
        for label, section in reversed(sections):  # global first, like the seed's merge
            for word in section.block_keywords:
                self._keywords.setdefault(normalize(word), label)
                self._keyword_words.setdefault(normalize(word), name_words(word))
            for word in section.allow_prefixes:
                norm = normalize(word)
                self._prefixes.setdefault(norm, label)
                self._prefix_words.setdefault(norm, name_words(word) if not norm[-1].isalnum() else None)
        if server is not None and server.default_action is not None:
            self._default: tuple[Action, str] = (server.default_action, f"{where}.default_action")
        else:
            self._default = (g.default_action, "global.default_action")
        self.otp_attempt_count = (
            server.otp_attempt_count if server and server.otp_attempt_count else g.otp_attempt_count
        )
        self.otp_length = g.otp_length
        self.otp_ttl_seconds = g.otp_ttl_seconds
        self.trust_annotations = server.trust_annotations if server is not None else False
        self.new_tools = server.new_tools if server and server.new_tools else g.new_tools
        via = server.approve_via_elicitation if server is not None else False
        #: Client names whose own dialog may approve (``approve_via_elicitation``); empty: any client.
        self.elicitation_clients = frozenset(map(normalize, via)) if isinstance(via, list) else frozenset()
        self.elicitation = via is not False
        self._trust_label = f"{where}.trust_annotations"
        self._names: dict[str, _NameEntry] = {}
        self._applicable: dict[tuple[str, frozenset[str], frozenset[str]], tuple[_Rule, ...]] = {}

    def approves_via_elicitation(self, client_name: str) -> bool:
        """Whether the dialog of the MCP client called ``client_name`` may approve this server's
        paused calls (``approve_via_elicitation``)."""
        if not self.elicitation:
            return False
        return not self.elicitation_clients or normalize(client_name) in self.elicitation_clients

    def decide(
        self, tool: str, arguments: object, annotations: Mapping[str, object] | None = None
    ) -> Verdict:
        """Judge one call: :meth:`_judge`, then an ``approve`` may be turned into ``allow`` by an
        ``approved`` rule (never a ``deny``: those rules are not looked at for it)."""
        verdict = self._judge(tool, arguments, annotations)
        if verdict.action == "approve" and self._approved:
            approved = self._approved_rule(tool, arguments, annotations)
            if approved is not None:
                return approved.verdict(tool)
        return verdict

    def _approved_rule(
        self, tool: str, arguments: object, annotations: Mapping[str, object] | None
    ) -> _Rule | None:
        name = norm_key(tool)
        args, hints = Args(arguments), self._hints(annotations)
        for rule in self._approved:
            if (rule.tool_test is None or rule.tool_test(name)) and rule.matches(args, hints):
                return rule
        return None

    def _judge(
        self, tool: str, arguments: object, annotations: Mapping[str, object] | None = None
    ) -> Verdict:
        """Judge one call by rules, keywords, hints, prefixes and the default.

        Args:
            tool: The tool name exactly as the agent sent it.
            arguments: The call's ``arguments`` (normally an object; anything else has no keys).
            annotations: The tool's annotations from ``tools/list``, or ``None`` if it was never
                listed.

        Returns:
            The verdict of the first step that matched (see the module docstring).
        """
        entry = self._entry(tool)
        if entry.candidates and entry.normalized:
            args, hints = Args(arguments), self._hints(annotations)
            present = args.keys()
            top = arguments.keys() if isinstance(arguments, dict) else frozenset()
            # Rules that test a key the arguments lack cannot match (explain() says which). Which
            # those are depends only on which tested keys are there: remembered, since calls to a
            # tool mostly have the same keys (a bounded memo, like the one of names).
            key = (tool, entry.keys_tested.intersection(present), entry.top_keys_tested.intersection(top))
            rules = self._applicable.get(key)
            if rules is None:
                rules = entry.applicable(present, top)
                if len(tool) <= _CACHEABLE:
                    if len(self._applicable) >= _CACHE_SIZE:
                        self._applicable.clear()
                    self._applicable[key] = rules
            for rule in rules:
                if rule.matches(args, hints):
                    return rule.verdict(tool)
        if entry.blocked is not None:
            return entry.blocked
        if self.trust_annotations and annotations is not None:
            trusted = self._by_hints(tool, annotations)
            if trusted is not None:
                return trusted
        return entry.fallback

    def argument_keys(self, tool: str) -> frozenset[str] | None:
        """Keys whose absence makes :meth:`decide`'s verdict for ``tool`` independent of the
        arguments, or None if no such set exists.

        A rule that tests arguments matches only when every key it needs is present (at any
        depth, normalized: lower case for an ASCII key), or every top-level key its paths start
        with; so if a call has none of the keys returned (compared in lower case), no such rule
        can match and the verdict is the same for any arguments (and the same annotations). A
        rule with a test that no key gates (``exists: false``, a path starting with ``$.*``)
        makes it None. The condition for a lease (see :mod:`daemon.leases`).
        """
        keys: set[str] = set()
        for rule in self._entry(tool).candidates:
            if not rule.conditions:
                continue
            if not rule.needs and not rule.needs_top:
                return None
            keys.update(rule.needs)
            keys.update(key.lower() for key in rule.needs_top)
        return frozenset(keys)

    def explain(
        self, tool: str, arguments: object, annotations: Mapping[str, object] | None = None
    ) -> list[str]:
        """Every step :meth:`decide` tries for this call, in order, ending with the decision.

        For a dry-run command; takes the same arguments as :meth:`decide` and reaches the same
        verdict.
        """
        lines = self._explain(tool, arguments, annotations)
        if not self._approved or self._judge(tool, arguments, annotations).action != "approve":
            return lines
        approved = self._approved_rule(tool, arguments, annotations)
        *steps, decision = lines
        if approved is None:
            return [*steps, f"approved rules: none of the {len(self._approved)} matches", decision]
        so_far = decision.replace("decision:", "verdict so far:", 1)
        return [*steps, so_far, f"{approved.label}: matches", _decision(approved.verdict(tool))]

    def _explain(
        self, tool: str, arguments: object, annotations: Mapping[str, object] | None = None
    ) -> list[str]:
        entry = self._entry(tool)
        lines = [f"tool name {_shown(tool)} is matched as {_shown(entry.normalized)}"]
        if not entry.normalized:
            return [*lines, _decision(entry.fallback)]
        hints = self._hints(annotations)
        if not self.trust_annotations:
            source = "MCP defaults: trust_annotations is off"
        else:
            source = (
                "from the server" if annotations is not None else "MCP defaults: the tool was never listed"
            )
        shown_hints = ", ".join(f"{k}={str(v).lower()}" for k, v in hints.items())
        lines.append(f"annotations ({source}): {shown_hints}")
        args = Args(arguments)
        for rule in self._rules:
            if rule.tool_test is not None and not rule.tool_test(entry.normalized):
                lines.append(f"{rule.label}: {rule.tool} does not match")
                continue
            failure = rule.failure(args, hints)
            if failure is None:
                return [*lines, f"{rule.label}: matches", _decision(rule.verdict(tool))]
            lines.append(f"{rule.label}: {failure}")
        lines += entry.trace
        if entry.blocked is not None:
            return [*lines, _decision(entry.blocked)]
        if self.trust_annotations and annotations is not None:
            trusted = self._by_hints(tool, annotations)
            if trusted is not None:
                return [*lines, f"{trusted.rule}: declared by the trusted server", _decision(trusted)]
            lines.append(
                f"{self._trust_label}: the server declares neither readOnlyHint nor destructiveHint true"
            )
        return [*lines, *entry.rest_trace, _decision(entry.fallback)]

    def _by_hints(self, tool: str, annotations: Mapping[str, object]) -> Verdict | None:
        """Step 3: what a trusted server declared explicitly (a hint left out decides nothing)."""
        if annotations.get("readOnlyHint") is True:
            rule = f"{self._trust_label} readOnlyHint"
            return Verdict(
                "allow", rule, f"Tool {_shown(tool)} is allowed: its trusted server declares it read-only."
            )
        if annotations.get("destructiveHint") is True:
            rule = f"{self._trust_label} destructiveHint"
            why = "needs approval: its trusted server declares it destructive"
            return Verdict("approve", rule, f"Tool {_shown(tool)} {why}.")
        return None

    def _hints(self, annotations: Mapping[str, object] | None) -> Mapping[str, bool]:
        if not self.trust_annotations or annotations is None:
            return SPEC_DEFAULT_HINTS
        # A hint that is missing or not a boolean counts as absent, so it takes the default.
        return {
            name: value if isinstance(value := annotations.get(name), bool) else default
            for name, default in SPEC_DEFAULT_HINTS.items()
        }

    def _entry(self, tool: str) -> _NameEntry:
        entry = self._names.get(tool)
        if entry is None:
            entry = self._compile_name(tool)
            if len(tool) <= _CACHEABLE:
                if len(self._names) >= _CACHE_SIZE:
                    self._names.clear()  # crude, but an agent cycling names only costs itself speed
                self._names[tool] = entry
        return entry

    def _compile_name(self, tool: str) -> _NameEntry:
        name = norm_key(tool)
        if not name:
            why = " once invisible characters are removed" if tool else ""
            reason = f"Tool {_shown(tool)} has an empty name{why}, so it is denied."
            none: frozenset[str] = frozenset()
            return _NameEntry(
                name,
                (),
                Verdict("deny", "tool name", reason),
                Verdict("deny", "tool name", reason),
                (),
                (),
                none,
                none,
            )
        candidates = tuple(r for r in self._rules if r.tool_test is None or r.tool_test(name))
        tested = frozenset().union(*(r.needs for r in candidates))
        top_tested = frozenset().union(*(r.needs_top for r in candidates))
        words = name_words(tool) if len(tool) <= _CACHEABLE else name_words.__wrapped__(tool)
        blocked, trace = self._by_keyword(tool, name, words)
        fallback, rest = self._by_prefix(tool, name, words)
        return _NameEntry(name, candidates, blocked, fallback, trace, rest, tested, top_tested)

    def _by_keyword(self, tool: str, name: str, words: str) -> tuple[Verdict | None, tuple[str, ...]]:
        """Step 2: a block keyword in the name (as written, or in its words), with the trace."""
        for keyword, kw_words in self._keyword_words.items():
            if keyword in name or (kw_words and kw_words in words):
                rule = f"{self._keywords[keyword]}.block_keywords {keyword!r}"
                why = f"needs approval because its name contains the blocked keyword {keyword!r}"
                return Verdict("approve", rule, f"Tool {_shown(tool)} {why}."), (f"{rule}: in the name",)
        return None, (f"block_keywords: none of {list(self._keywords)} is in the name",)

    def _by_prefix(self, tool: str, name: str, words: str) -> tuple[Verdict, tuple[str, ...]]:
        """Steps 4 and 5: an allow prefix, else the default, with the trace for explain()."""
        shown = _shown(tool)
        for prefix, lead in self._prefix_words.items():
            if name.startswith(prefix) or (lead and (words == lead or words.startswith(lead + "_"))):
                rule = f"{self._prefixes[prefix]}.allow_prefixes {prefix!r}"
                why = f"is allowed because its name starts with the allowed prefix {prefix!r}"
                read = "" if name.startswith(prefix) else f" (its words: {words!r})"
                return Verdict("allow", rule, f"Tool {shown} {why}."), (f"{rule}: starts the name{read}",)
        trace = (f"allow_prefixes: the name ({words!r} in words) starts with none of {list(self._prefixes)}",)
        action, rule = self._default
        why = "matched no rule, blocked keyword or allowed prefix, so the default applies: it"
        why = f"{why} {_PHRASE[action]}"
        return Verdict(action, rule, f"Tool {shown} {why}."), (*trace, f"{rule}: {action}")


def compile_policy(cfg: PolicyFile, server_name: str | None) -> Policy:
    """Compile a validated policy file for one server.

    Args:
        cfg: The policy file, from :func:`~daemon.config.load_config`.
        server_name: The server section to apply on top of the global one; ``None`` or a name not
            in ``servers`` applies the global section alone (the latter with a warning).
    """
    return Policy(cfg, server_name)


def load_policy(path: str | None, server_name: str | None) -> Policy:
    """Load the policy file at ``path`` (``None``: the bundled default) and compile it.

    Raises:
        ConfigError: The file cannot be used (see :func:`~daemon.config.load_config`).
    """
    return compile_policy(load_config(path), server_name)
