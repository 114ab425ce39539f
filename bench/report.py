"""Section results and the Markdown and JSON reports made from them."""

import dataclasses
import json


@dataclasses.dataclass
class Check:
    """One target: a measured value against a bound. `passed` is None when nothing could
    be measured (the reason is in `note`)."""
    what: str
    measured: float | None
    target: str
    passed: bool | None
    unit: str = ""
    note: str = ""

    @property
    def verdict(self):
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


def at_least(what, measured, bound, unit="", note=""):
    return Check(what, measured, f"≥ {bound:g}{unit}", None if measured is None else measured >= bound, unit, note)


def at_most(what, measured, bound, unit="", note=""):
    return Check(what, measured, f"≤ {bound:g}{unit}", None if measured is None else measured <= bound, unit, note)


def not_measured(what, target, note):
    return Check(what, None, target, None, note=note)


@dataclasses.dataclass
class Section:
    name: str
    title: str
    why: str
    rows: list = dataclasses.field(default_factory=list)  # (metric, value) pairs
    checks: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    table: list = dataclasses.field(default_factory=list)  # free-form rows (dicts), from other modules
    error: str | None = None

    def row(self, metric, value):
        self.rows.append((metric, value))


def seconds(value):
    return f"{value:.2f} s"


def megabytes(value):
    return "n/a" if value is None else f"{value / 2**20:.1f} MB"


def measured_text(check):
    if check.measured is None:
        return "n/a"
    return f"{check.measured:.3g}{check.unit}"


def markdown(header, machine_lines, sections):
    lines = [*header, "", "## Machine", "", *[f"- {line}" for line in machine_lines], "", "## Summary", "",
             "| section | check | measured | target | result |", "| --- | --- | --- | --- | --- |"]
    for section in sections:
        if section.error:
            lines.append(f"| {section.title} | (section failed) | | | ERROR |")
        for check in section.checks:
            lines.append(f"| {section.title} | {check.what} | {measured_text(check)} | {check.target} | {check.verdict} |")
    for section in sections:
        lines += ["", f"## {section.title}", "", section.why, ""]
        if section.error:
            lines += [f"**Failed:** `{section.error}`", ""]
        if section.rows:
            lines += ["| metric | value |", "| --- | --- |", *[f"| {metric} | {value} |" for metric, value in section.rows], ""]
        if section.table:
            columns = list(dict.fromkeys(key for row in section.table for key in row))
            lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
            lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in section.table]
            lines.append("")
        lines += [f"- {check.what}: {check.note}" for check in section.checks if check.note]
        lines += [f"- {note}" for note in section.notes]
    return "\n".join(lines).rstrip() + "\n"


def as_json(header, machine, knobs, sections):
    return json.dumps({"run": header, "machine": machine, "knobs": knobs,
                       "sections": [dataclasses.asdict(section) | {"checks": [
                           dataclasses.asdict(check) | {"verdict": check.verdict} for check in section.checks]}
                           for section in sections]}, indent=2, default=str)
