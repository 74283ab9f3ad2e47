"""The domain's words as station staff say them, in Simplified Chinese and English.

Used by the station commands and the HTML report so that a status, a kind or a channel reads the same
everywhere. :func:`label` falls back to the code itself for a value it does not know.
"""

from __future__ import annotations

from caresync.field.i18n import Catalog

__all__ = ["DOMAIN_LABELS", "label"]

_WORDS: dict[str, tuple[str, str]] = {
    # ticket status: 下单 → 接单 → 回单
    "status.submitted": ("已下单", "submitted"),
    "status.accepted": ("已接单", "accepted"),
    "status.in_progress": ("办理中", "in progress"),
    "status.resolved": ("已办结", "resolved"),
    "status.closed": ("已回单", "closed"),
    "status.cancelled": ("已取消", "cancelled"),
    # ticket kinds: the five-in-one mechanism and the station's other services
    "kind.repair": ("维修", "repair"),
    "kind.dispute": ("纠纷调解", "dispute"),
    "kind.legal_aid": ("法律援助", "legal aid"),
    "kind.counselling": ("心理关爱", "counselling"),
    "kind.volunteer_help": ("志愿帮扶", "volunteer help"),
    "kind.errand": ("红色代办", "errand"),
    "kind.wish": ("微心愿", "wish"),
    "kind.early_warning": ("异常预警", "early warning"),
    "kind.emergency": ("突发事件", "emergency"),
    "kind.sentiment": ("社情民意", "residents' views"),
    "kind.other": ("其他", "other"),
    # channels
    "channel.walk_in": ("来站", "walk-in"),
    "channel.wish_box": ("心愿信箱", "wish box"),
    "channel.mailbox": ("便民邮筒", "mailbox"),
    "channel.door_knock": ("敲门", "door-knock"),
    "channel.outdoor_report": ("户外工作者报告", "outdoor report"),
    "channel.phone": ("电话", "phone"),
    "channel.proxy": ("代办", "proxy"),
    # priority
    "priority.low": ("低", "low"),
    "priority.normal": ("普通", "normal"),
    "priority.high": ("高", "high"),
    "priority.green": ("绿色通道", "green channel"),
    # visit outcomes
    "visit.well": ("安好", "well"),
    "visit.needs_help": ("需要帮助", "needs help"),
    "visit.unwell": ("身体不适", "unwell"),
    "visit.no_answer": ("无人应门", "no answer"),
    "visit.hospitalised": ("住院", "hospitalised"),
    "visit.emergency": ("紧急情况", "emergency"),
    "visit.moved": ("已搬走", "moved"),
    # mediation outcomes
    "outcome.settled": ("调解成功", "settled"),
    "outcome.not_settled": ("未达成", "not settled"),
    "outcome.referred": ("已移交", "referred"),
    # resident flags: "the old and the young" (一老一小)
    "resident.lives_alone": ("独居", "lives alone"),
    "resident.elderly": ("老人", "elderly"),
    "resident.left_behind_child": ("留守儿童", "left-behind child"),
    "resident.disabled": ("残疾", "disabled"),
    # knock round
    "due.overdue": ("已逾期", "overdue"),
    "due.due": ("到期", "due"),
    "due.ok": ("未到期", "not due"),
    "flag.no_answer_twice": ("连续两次无人应门", "no answer twice"),
    "flag.unwell": ("上次身体不适", "unwell last time"),
    "flag.emergency": ("上次紧急情况", "emergency last time"),
    # review levels
    "level.conflict": ("冲突，需要决定", "conflict: needs a decision"),
    "level.parallel": ("同时修改，已合并（仅供知悉）", "edited in parallel: merged, for information"),
}

#: ``DOMAIN_LABELS("status.closed", "zh")`` → ``已回单``.
DOMAIN_LABELS = Catalog({key: {"zh": zh, "en": en} for key, (zh, en) in _WORDS.items()})


def label(group: str, value: object, lang: str) -> str:
    """The word for ``value`` (an enum member or its code) of ``group`` (status, kind, channel, ...)."""
    code = getattr(value, "value", value)
    key = f"{group}.{code}"
    return DOMAIN_LABELS(key, lang) if key in DOMAIN_LABELS else str(code)
