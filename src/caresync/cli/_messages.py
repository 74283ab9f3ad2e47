"""The programs' messages in Simplified Chinese and English, in one catalogue module: the station commands'
(:data:`MESSAGES`, a test checks every key is used) and the courier's handheld (:data:`COURIER_MESSAGES`)."""

from __future__ import annotations

from caresync.field.i18n import Catalog

__all__ = ["COURIER_MESSAGES", "LIBRARY_ERRORS", "MESSAGES"]

_M: dict[str, tuple[str, str]] = {
    # errors
    "err.prefix": ("错误", "Error"),
    "err.usage": ("用法错误", "Usage error"),
    # what each error code means, said first in Chinese (the library's detail follows in English)
    "err.invalid_input": ("错误（输入有误）", "Error"),
    "err.invalid_op": ("错误（收到的变更无效）", "Error"),
    "err.not_found": ("错误（找不到记录）", "Error"),
    "err.invalid_action": ("错误（此操作现在不可行）", "Error"),
    "err.merge_error": ("错误（数据合并冲突）", "Error"),
    "err.op_fork": ("错误（设备数据被复制或恢复过）", "Error"),
    "err.store_error": ("错误（无法读写数据文件）", "Error"),
    "err.store_version": ("错误（数据文件来自更新版本）", "Error"),
    "err.sync_failed": ("错误（同步未完成，数据未丢失）", "Error"),
    "err.server_unreachable": ("错误（连不上服务器，数据未丢失）", "Error"),
    "err.server_refused": ("错误（服务器拒绝）", "Error"),
    "err.trust_failed": ("错误（签名或密钥校验失败）", "Error"),
    "err.bad_signature": ("错误（变更的签名不符，可能被篡改）", "Error"),
    "err.bundle_refused": ("错误（中转包无法使用）", "Error"),
    "err.help": ("用 {command} --help 查看用法", "see {command} --help"),
    "err.aborted": ("已中止。", "Aborted."),
    "err.io": ("无法使用 {path}：{detail}。", "Cannot use {path}: {detail}."),
    "err.config": (
        "无法读取设置文件 {path}：请重新运行 caresync init。",
        "Cannot read the settings file {path}: run caresync init again.",
    ),
    "err.no_actor": (
        "请说明谁在使用本设备：加上 --actor 姓名，或先运行 caresync init --actor 姓名。",
        "Say who is working: add --actor NAME, or run caresync init --actor NAME first.",
    ),
    "err.init_actor": (
        "初始化需要使用者姓名：caresync init --actor 姓名",
        "Setting up needs who works on this device: caresync init --actor NAME",
    ),
    "err.no_home": (
        "{home} 中没有本设备的数据：请先运行 caresync init --actor 姓名（或用 --home 指定文件夹）。",
        "No replica in {home}: run caresync init --actor NAME first (or point --home at the right folder).",
    ),
    "err.no_db": ("找不到数据文件 {path}：请检查路径。", "No replica file {path}: check the path."),
    # what a file is when it is not a replica (caresync.store.identify); nothing was changed
    "file.folder": ("{path} 是文件夹，不是数据文件。", "{path} is a folder, not a replica file."),
    "file.unreadable": ("无法读取 {path}。", "{path} cannot be read."),
    "file.empty": ("{path} 是空文件，不是数据文件。", "{path} is an empty file, not a replica."),
    "file.not_sqlite": (
        "{path} 不是 caresync 数据文件（不是 SQLite 数据库）。",
        "{path} is not a caresync replica (not an SQLite database).",
    ),
    "file.bundle": (
        "{path} 是中转数据包（由快递员携带），不是数据文件。",
        "{path} is a relay bundle (a file a courier carries), not a replica.",
    ),
    "file.courier_bag": (
        "{path} 是快递员的投递包（所携数据包），不是数据文件。",
        "{path} is a courier's bag of carried bundles, not a replica.",
    ),
    "file.server_database": (
        "{path} 是同步服务器的数据库，不是数据文件。",
        "{path} is a caresync server's database, not a replica.",
    ),
    "file.sqlite": (
        "{path} 是其他用途的 SQLite 数据库，不是 caresync 数据文件。",
        "{path} is an SQLite database of something else, not a caresync replica.",
    ),
    "file.untouched": ("未作任何改动。", "Nothing was changed."),
    "err.no_server": (
        "未指定同步服务器：加上 --server 地址，或运行 caresync init --server 地址。",
        "No sync server given: add --server URL, or save one with caresync init --server URL.",
    ),
    # init
    "init.created": (
        "已初始化本设备：{path}（设备 {device}，使用者 {actor}）",
        "Set up this device: {path} (device {device}, actor {actor})",
    ),
    "init.exists": (
        "本设备已初始化：{path}（设备 {device}，使用者 {actor}）",
        "This device is already set up: {path} (device {device}, actor {actor})",
    ),
    # tickets
    "ticket.submitted": (
        "已下单，编号 {number}（请告知居民），截止 {due}。记录号 {id}",
        "Submitted: number {number} (tell the resident), due {due}. Record {id}",
    ),
    "ticket.submitted_provisional": (
        "已下单，临时编号 {number}（请告知居民；下次同步后换成短编号，临时编号仍可查询），截止 {due}。记录号 {id}",
        "Submitted: provisional number {number} (tell the resident; the next sync gives it a short number, and this "
        "one still finds it), due {due}. Record {id}",
    ),
    "ticket.moved": ("诉求 {number}：{status}", "Ticket {number}: {status}"),
    "ticket.no_parcel": (
        "找不到信封编号为 {code} 的邮件：请核对编号，或先同步。",
        "No parcel with the envelope code {code} on this device: check the code, or sync first.",
    ),
    "ticket.rated": ("诉求 {number} 已评价。", "Ticket {number}: rating recorded."),
    "ticket.noted": ("诉求 {number} 已添加备注。", "Ticket {number}: note added."),
    "ticket.attached": (
        "诉求 {number} 已添加附件 {id}（{kind}，加密后 {size} 字节）。",
        "Ticket {number}: {kind} attached as {id} ({size} bytes sealed).",
    ),
    "visit.photo": ("照片已附在这次敲门记录上：{id}", "Photo attached to the knock: {id}"),
    "ticket.escalated": ("诉求 {number} 已上报至 {grid}。", "Ticket {number} escalated to {grid}."),
    "ticket.none": ("没有符合条件的诉求。", "No tickets match."),
    "ticket.list_title": ("诉求 {n} 件，其中超时 {overdue} 件", "{n} tickets, {overdue} overdue"),
    "ticket.overdue_mark": ("（超时）", "(overdue)"),
    "ticket.has_conflicts": (
        "{n} 处冲突待处理（caresync conflicts list）",
        "{n} conflict(s) to review (caresync conflicts list)",
    ),
    "ticket.history": ("处理记录：", "History:"),
    "numbers.block": ("号段 {start}-{end}，剩余 {left} 个", "block {start}-{end}, {left} left"),
    "numbers.next": ("下一个编号：{number}", "next number: {number}"),
    "numbers.no_block": (
        "本设备还没有服务器分配的号段：同步一次即可领取（caresync sync）。",
        "No block of numbers from the server yet: a sync fetches one (caresync sync).",
    ),
    "numbers.waiting": (
        "{n} 件诉求仍是临时编号，下次同步时换成短编号。",
        "{n} ticket(s) still show a provisional number; the next sync gives them short ones.",
    ),
    # residents, workers
    "resident.added": ("已登记居民 {name}（{id}）", "Registered {name} ({id})"),
    "resident.edited": ("已修改 {name}：{fields}", "Changed {name}: {fields}"),
    "resident.nothing": ("没有要修改的内容", "Nothing to change"),
    "resident.list_title": ("居民 {n} 人", "{n} residents"),
    "worker.added": ("已添加工作人员 {name}（{id}）", "Added worker {name} ({id})"),
    "mailbox.added": ("已添加邮筒 {code}（{name}，{grid}）", "Added mailbox {code} ({name}, {grid})"),
    "mailbox.none": ("没有邮筒。", "No mailboxes."),
    "parcel.registered": ("已登记邮件 {code}（{grid}）", "Registered parcel {code} ({grid})"),
    "parcel.none": ("没有邮件。", "No parcels."),
    "parcel.awaiting": ("等待驿站签收", "waiting for the station's receipt"),
    "parcel.receipted_by": ("已由 {who} 签收", "receipted by {who}"),
    "parcel.head": (
        "邮件 {code}  {grid}  状态 {stage}  保管人 {holder}",
        "Parcel {code}  {grid}  {stage}  held by {holder}",
    ),
    "parcel.has_code": ("已设置取件确认码", "delivery code set"),
    "parcel.no_code": ("未设置取件确认码（任何确认码都会被接受）", "no delivery code (any code is accepted)"),
    "parcel.receipted": (
        "已签收 {code}：现由驿站保管（交件人 {holder}）。",
        "Receipted {code}: the station holds it now (handed in by {holder}).",
    ),
    "parcel.code_new": (
        "邮件 {code} 的取件确认码：{delivery}。请抄在居民的回执上：本机只保存其校验值，之后无法再显示。",
        "Delivery code for parcel {code}: {delivery}. Write it on the resident's slip: only its hash is kept, so it "
        "cannot be shown again.",
    ),
    "parcel.code_set": (
        "已设置邮件 {code} 的取件确认码；本机只保存其校验值。",
        "Set the delivery code of parcel {code}; only its hash is kept.",
    ),
    "parcel.code_replaced": ("原来的确认码已作废。", "The old code no longer works."),
    "parcel.hop": ("已记录邮件 {code}：{stage}（{who}）", "Recorded parcel {code}: {stage} ({who})"),
    "parcel.returned": ("已记录邮件 {code} 退回驿站。", "Recorded parcel {code} as returned to the station."),
    "parcel.contents": ("居民的诉求：{text}", "the resident asks: {text}"),
    "parcel.contents_broken": (
        "（封存的内容无法打开或已被改动）",
        "(the sealed contents cannot be opened with this station's keys, or were altered)",
    ),
    "parcel.no_anomalies": ("所有邮件的交接记录都对得上。", "Every parcel's hand-overs add up."),
    "parcel.anomaly.picked_up_twice": ("被两人取件", "picked up twice"),
    "parcel.anomaly.delivered_not_handed_in": ("未经驿站签收就投递", "delivered, never receipted"),
    "parcel.anomaly.self_receipted": ("在交件人本机签收", "receipted on the courier's device"),
    "parcel.anomaly.custody_conflict": ("交接对不上", "hand-overs out of order"),
    "parcel.anomaly.duplicate_code": ("编号重复登记", "code registered twice"),
    # visits
    "visit.recorded": ("已记录敲门：{resident}，{outcome}", "Knock recorded: {resident}, {outcome}"),
    "visit.flagged": (
        "注意：{reason}。一步发起诉求：caresync visit raise {resident}",
        "Attention: {reason}. Raise a request in one step: caresync visit raise {resident}",
    ),
    "visit.raised": ("已发起诉求 {number}：{title}", "Raised ticket {number}: {title}"),
    "raise.no_answer_twice": (
        "居民 {resident}（{grid}）连续两次敲门无人应答",
        "Resident {resident} ({grid}) did not answer two knocks in a row",
    ),
    "raise.unwell": (
        "居民 {resident}（{grid}）上次敲门时身体不适",
        "Resident {resident} ({grid}) was unwell at the last knock",
    ),
    "raise.emergency": (
        "敲门发现紧急情况：居民 {resident}（{grid}）",
        "Emergency found at the door of resident {resident} ({grid})",
    ),
    "visit.list_title": ("敲门记录 {n} 条", "{n} door-knocks"),
    "due.summary": (
        "逾期 {overdue} 人，到期 {due} 人，需立即关注 {flagged} 人",
        "{overdue} overdue, {due} due, {flagged} flagged",
    ),
    "due.flagged_title": ("需立即关注", "Needs attention now"),
    "due.raise_hint": ("caresync visit raise {resident}", "caresync visit raise {resident}"),
    "unit.days": ("天", " d"),
    # disputes
    "dispute.opened": (
        "已受理纠纷，编号 {number}，当事人 {parties} 方",
        "Dispute opened: number {number}, {parties} parties",
    ),
    "dispute.party_added": ("纠纷 {number}：已添加当事人", "Dispute {number}: party added"),
    "dispute.session_added": ("纠纷 {number}：已记录调解", "Dispute {number}: session recorded"),
    "dispute.outcome_set": (
        "纠纷 {number}：{status}，已记录调解结果",
        "Dispute {number}: {status}, outcome recorded",
    ),
    # conflicts
    "conflicts.none": ("没有待处理的冲突。", "Nothing to review."),
    "conflicts.summary": (
        "需要决定 {conflicts} 处；同时修改（已合并，仅供知悉）{parallel} 处",
        "{conflicts} need a decision; {parallel} edited in parallel (merged, for information)",
    ),
    "conflicts.shown": ("← 当前显示", "<- shown now"),
    "conflicts.hint": (
        "处理：caresync conflicts resolve {key} --pick 序号（或 --value 值）",
        "decide: caresync conflicts resolve {key} --pick N (or --value VALUE)",
    ),
    "conflicts.hint_status": (
        "处理：caresync conflicts resolve {key} 确认当前状态，或直接办理下一步",
        "decide: caresync conflicts resolve {key} keeps the status shown, or record the next step",
    ),
    "conflicts.hint_custody": (
        "处理：记录下一次交接即可",
        "decide: record the next hand-over of the parcel",
    ),
    "conflicts.resolved": (
        "已处理 {key}；剩余 {left} 处冲突。同步后各设备一致。",
        "Settled {key}; {left} conflict(s) left. Sync to share it.",
    ),
    # sync
    "sync.unreachable": (
        "连不上服务器 {url}。数据没有丢失：{unsent} 条记录保存在本设备上。有网络时再同步。（{detail}）",
        "Cannot reach the sync server at {url}. Nothing is lost: {unsent} change(s) stay on this device. Sync again "
        "when the network is back. ({detail})",
    ),
    "sync.contacting": (
        "正在连接服务器 {url}（连接超时 {connect} 秒，总时限 {deadline} 秒）",
        "contacting {url} (connect timeout {connect} s, deadline {deadline} s)",
    ),
    "sync.scope_changed": (
        "站点已把本设备的网格从 {before} 改为 {after}（角色 {role}）：已移除 {removed} 条记录，"
        "{kept} 条因有未发送的工作暂时保留。",
        "The station changed this device's grids from {before} to {after} (role {role}): {removed} record(s) removed, "
        "{kept} kept for now because they hold unsent work.",
    ),
    "sync.scope_empty": (
        "本设备现在不持有任何记录：新的网格里没有数据。如有疑问请联系站点。",
        "This device now holds no records at all: nothing lies in its new grids. Ask the station if that is wrong.",
    ),
    "sync.progress_push": ("已发送 {done}/{total}", "sent {done} of {total}"),
    "sync.progress_pull": ("已接收 {done}", "received {done}"),
    "sync.retry": (
        "服务器没有应答（{reason}，第 {attempt}/{attempts} 次）；{delay} 秒后重试",
        "no answer from the server ({reason}, attempt {attempt} of {attempts}); trying again in {delay} s",
    ),
    "sync.done": (
        "已发送 {sent}，已接收 {received}，待发送 {unsent}",
        "sent {sent}, received {received}, still to send {unsent}",
    ),
    "enroll.done": (
        "已登记为 {device}：{role}，网格 {grids}，服务器 {url}。",
        "Enrolled as {device}: {role} in {grids}, with {url}.",
    ),
    "enroll.everywhere": ("全部网格", "everywhere"),
    "enroll.usage": (
        "用法：caresync enroll [文件] 登记码 --server 地址",
        "Usage: caresync enroll [FILE] CODE --server URL",
    ),
    "bundle.exported": (
        "已把 {n} 条未发送的变更写入 {file}（中转包 {bundle}，有效期至 {until}）；收到服务器回执前它们仍留在本设备上。",
        "wrote {n} unsent change(s) to {file} (bundle {bundle}, valid until {until}); they stay on this device "
        "until the answer comes back",
    ),
    "bundle.imported": (
        "已导入 {answers} 份回执：收到 {received} 条新变更，服务器已保存本设备 {acked} 条变更，拒收 {refused} 条。",
        "imported {answers} answer(s): {received} new change(s), {acked} of this device's changes stored by the "
        "server, {refused} refused",
    ),
    "bundle.more": ("服务器还有更多内容：请再导出一个中转包。", "the server has more: export another bundle"),
    "bundle.skipped": ("已跳过：{reason}", "skipped: {reason}"),
    "sync.waiting": ("（{n} 条等待其他设备的变更）", " ({n} waiting for others' changes)"),
    "sync.refused": ("服务器拒收 {kind}（{record}）：{reason}", "refused {kind} on {record}: {reason}"),
    # station-key
    "skey.created": (
        "已在本设备生成驿站密钥：{key}\n下一步：caresync station-key register",
        "Made the station's key on this device: {key}\nNext: caresync station-key register",
    ),
    "skey.registered": (
        "已向同步服务器登记驿站公钥 {key}；各设备下次同步时取得并固定它。",
        "Registered station public key {key} with the sync server; devices learn and pin it at their next sync.",
    ),
    "skey.rotated": (
        "驿站密钥已更换为 {key}（由旧密钥签名）并已登记；旧密钥仍可打开以前加密的内容。",
        "Rotated the station's key to {key} (signed by the old one) and registered it; the old key still opens "
        "what was sealed to it.",
    ),
    "skey.held": ("本设备持有驿站密钥：{key}", "This device holds the station's key: {key}"),
    "skey.not_held": ("本设备不持有驿站密钥", "This device does not hold the station's key"),
    "skey.pinned": ("固定的驿站公钥：{key}", "Pinned station public key: {key}"),
    "skey.none": ("尚无", "none yet"),
    "skey.everywhere": ("全部网格", "everywhere"),
    "skey.granted": (
        "读者密钥：新生成 {made}；本次分发 {wrapped} 份（每份只有对应设备能打开）。",
        "Readers' keys: made {made}; {wrapped} wrap(s) given out (each opens on its own device only).",
    ),
    "skey.grant_problem": ("读者密钥问题：{problem}", "Readers' keys: {problem}"),
    "skey.readers": ("本设备持有的读者密钥：{keys}", "Readers' keys this device holds: {keys}"),
    "skey.granted_to": (
        "网格 {grid} 的 {role} 读者密钥 v{version} 已给：{devices}",
        "Readers' key of the {role}s of {grid}, v{version}, given to: {devices}",
    ),
    "skey.problem": ("已拒绝服务器提供的驿站密钥：{problem}", "Refused the station key the server offers: {problem}"),
    "sync.held": (
        "{n} 条变更含有文字内容，在本设备取得驿站密钥前留在本机、暂不发送",
        "{n} change(s) hold free text and stay on this device, unsent, until it has the station's key",
    ),
    # report
    "report.title": ("服务站报表 {period}（{grid}）", "Station report {period} ({grid})"),
    "report.all_grids": ("全部网格", "all grids"),
    "report.figure": ("指标", "Figure"),
    "report.value": ("数值", "Value"),
    "report.received": ("收到诉求", "Requests received"),
    "report.resolved": ("办结诉求", "Requests resolved"),
    "report.satisfaction": ("满意率（已评价数）", "Satisfaction (rated)"),
    "report.within48": ("48小时内办结", "Resolved within 48 h"),
    "report.on_time": ("按时办结", "Resolved on time"),
    "report.median": ("办结用时中位数", "Median time to resolve"),
    "report.open": ("未办结", "Open"),
    "report.overdue_n": ("超时 {n}", "{n} overdue"),
    "report.transit": ("快递小哥传递用时", "Time in courier transit"),
    "report.mediated": ("调解纠纷", "Disputes mediated"),
    "report.mediation_success": ("调解成功率", "Mediation success"),
    "report.visits": ("敲门探访", "Door-knocks"),
    "report.served": ("服务居民", "Residents served"),
    "report.residents_overdue": ("逾期未探访居民", "Residents overdue a knock"),
    "report.by_kind": ("按类别", "By kind"),
    "report.by_channel": ("按渠道", "By channel"),
    "report.by_grid": ("按网格", "By grid"),
    "report.written": ("报表已写入 {path}", "Report written to {path}"),
    # field names
    "field.number": ("编号", "number"),
    "field.id": ("记录号", "id"),
    "field.title": ("事项", "title"),
    "field.status": ("状态", "status"),
    "field.kind": ("类别", "kind"),
    "field.channel": ("渠道", "channel"),
    "field.priority": ("优先级", "priority"),
    "field.grid": ("网格", "grid"),
    "field.assignee": ("承办人", "assignee"),
    "field.resident": ("居民", "resident"),
    "field.submitted": ("下单时间", "submitted"),
    "field.due": ("截止", "due"),
    "field.resolved": ("办结时间", "resolved"),
    "field.resolution": ("办理结果", "resolution"),
    "field.closed": ("回单时间", "closed"),
    "field.rating": ("评价", "rating"),
    "field.description": ("说明", "description"),
    "field.mediator": ("调解员", "mediator"),
    "field.outcome": ("结果", "outcome"),
    "field.party": ("当事人", "party"),
    "field.session": ("调解记录", "session"),
    "field.note": ("备注", "note"),
    "field.attachment": ("附件", "attachment"),
    "field.conflicts": ("冲突", "conflicts"),
    "field.name": ("姓名", "name"),
    "field.address": ("地址", "address"),
    "field.phone": ("电话", "phone"),
    "field.flags": ("标记", "flags"),
    "field.knock_every": ("敲门间隔（天）", "knock every (days)"),
    "field.birth_year": ("出生年份", "birth year"),
    "field.when": ("时间", "when"),
    "field.visitor": ("敲门人", "visitor"),
    "field.last_visit": ("上次敲门", "last knock"),
    "field.reason": ("原因", "reason"),
    "field.ticket": ("诉求", "ticket"),
    "field.state": ("状态", "state"),
    # console
    "console.no_extra": (
        "工作台需要额外的组件（缺少 {module}）：pip install 'caresync[console]'",
        "The console needs its extra (missing {module}): pip install 'caresync[console]'",
    ),
    "console.no_accounts": (
        "还没有工作台账号：先运行 caresync console-user add 姓名",
        "No console account yet: run caresync console-user add NAME first.",
    ),
    "console.exposed": (
        "警告：工作台将在 {host} 上开放，其他电脑也能访问登录页。请放在 HTTPS 反向代理之后，并只在可信网络中使用。",
        "Warning: the console will answer on {host}, so other computers can reach its sign-in page. Put it behind "
        "an HTTPS reverse proxy and use it on a network you trust.",
    ),
    "console.started": ("工作台已启动：{url}（按 Ctrl+C 停止）", "The console is running at {url} (Ctrl+C stops it)"),
    "console.password": ("密码（至少 10 个字符）", "Password (at least 10 characters)"),
    "console.user_added": ("已保存工作台账号 {name}。", "Console account {name} saved."),
    "console.user_removed": ("已删除工作台账号 {name}。", "Console account {name} removed."),
    "console.no_users": ("还没有工作台账号。", "No console account yet."),
    # export
    "export.written": ("已写入 {n} 行：{path}", "Wrote {n} row(s) to {path}"),
    "export.format": (
        "{what} 不能导出为 {fmt}：open311 只能是 json，其他只能是 csv 或 xlsx。",
        "{what} cannot be written as {fmt}: open311 is json only, the others csv or xlsx.",
    ),
}

MESSAGES = Catalog({key: {"zh": zh, "en": en} for key, (zh, en) in _M.items()})

#: The courier's handheld (``caresync-courier``): what it says, by key, in both languages.
COURIER_MESSAGES = Catalog(
    {
        "picked_up": {"en": "Picked up {code} at mailbox {place}.", "zh": "已在邮筒 {place} 取件 {code}。"},
        "taken_out": {"en": "Took {code} from the station for delivery.", "zh": "已从驿站领取 {code}，准备派送。"},
        "sealed": {
            "en": "What the resident asks for is sealed to the station (hash {hash}); this handheld cannot read it.",
            "zh": "居民的诉求已加密封存给驿站（校验码 {hash}）；本机无法读取。",
        },
        "handed_in": {
            "en": "Handed {code} in at the station. Custody passes when the station confirms it; until then it is "
            "still yours.",
            "zh": "已在驿站交件 {code}。驿站确认后才算交接完成；确认前仍由你保管。",
        },
        "delivered": {"en": "Delivered {code} (confirmation {confirm}).", "zh": "已投递 {code}（确认码 {confirm}）。"},
        "delivered_checked": {
            "en": "Delivered {code}: the resident's delivery code matched.",
            "zh": "已投递 {code}：居民的取件确认码核对无误。",
        },
        "photo_attached": {"en": "Photo sealed and attached: {id}.", "zh": "照片已加密并附上：{id}。"},
        "returned": {"en": "Returned {code}: {reason}.", "zh": "已退回 {code}：{reason}。"},
        "report_title.early_warning": {
            "en": "Outdoor report: early warning in {grid}",
            "zh": "户外上报：{grid} 异常情况预警",
        },
        "report_title.emergency": {"en": "Outdoor report: emergency in {grid}", "zh": "户外上报：{grid} 突发事件直报"},
        "report_title.sentiment": {
            "en": "Outdoor report: what residents are saying in {grid}",
            "zh": "户外上报：{grid} 社情民意",
        },
        "reported": {
            "en": "Reported ({kind}) as request {number} in grid {grid}; it goes to the station with the next sync "
            "(which gives a provisional number its short one).",
            "zh": "已上报（{kind}），工单号 {number}，网格 {grid}；下次同步时送达驿站（临时编号届时换成短编号）。",
        },
        "route_empty": {"en": "Nothing to pick up or deliver.", "zh": "目前没有要取或要送的邮件。"},
        "stop_pickup": {
            "en": "{n}. Pick up at mailbox {place} ({name}, {grid}): {count} parcel(s){due}",
            "zh": "{n}. 到邮筒 {place}（{name}，{grid}）取件：{count} 件{due}",
        },
        "stop_collect": {
            "en": "{n}. Collect at the station for residents' doors (caresync-courier pickup CODE): {count} parcel(s)"
            "{due}",
            "zh": "{n}. 到驿站领取派送的邮件（caresync-courier pickup 编号）：{count} 件{due}",
        },
        "stop_deliver": {
            "en": "{n}. Deliver in {place}: {count} parcel(s){due}",
            "zh": "{n}. 到 {place} 派送：{count} 件{due}",
        },
        "due": {"en": " - DUE", "zh": " —— 已超时"},
        "route_parcel": {"en": "   {code}  waiting {hours} h", "zh": "   {code}  已等待 {hours} 小时"},
        "syncing_push": {"en": "sending", "zh": "发送中"},
        "syncing_pull": {"en": "receiving", "zh": "接收中"},
        "synced": {
            "en": "Synced: sent {sent}, received {received}, still to send {unsent}.",
            "zh": "同步完成：发送 {sent} 条，接收 {received} 条，待发送 {unsent} 条。",
        },
        "relayed": {
            "en": "Delivered bundle {bundle} of device {origin}: {stored} new, {duplicates} already held.",
            "zh": "已送达设备 {origin} 的数据包 {bundle}：新 {stored} 条，已有 {duplicates} 条。",
        },
        "relay_refused": {
            "en": "The server refused bundle {bundle} of device {origin}: {reason}",
            "zh": "服务器拒收设备 {origin} 的数据包 {bundle}：{reason}",
        },
        "refused_op": {
            "en": "Refused by the server ({kind} on {record}): {reason}",
            "zh": "服务器拒收（{kind}，{record}）：{reason}",
        },
        "offline": {
            "en": "Cannot reach the sync server at {url}. Nothing is lost: {unsent} change(s) and {carried} carried "
            "bundle(s) stay on this handheld. Sync again when you have signal.",
            "zh": "连不上服务器 {url}。数据没有丢失：{unsent} 条记录和 {carried} 个代送数据包都保存在本机。"
            "有信号时再同步。",
        },
        "server_refused": {
            "en": "The server refused this handheld: {detail}",
            "zh": "服务器拒绝了本机：{detail}",
        },
        "not_connected": {
            "en": "This handheld is not enrolled with a server yet: run caresync-courier enroll SERVER_URL CODE.",
            "zh": "本机还没有登记到服务器：请运行 caresync-courier enroll 服务器地址 登记码。",
        },
        "enrolled": {
            "en": "Enrolled with {url} as {name}; this handheld is device {replica}.",
            "zh": "已登记到 {url}，名字 {name}；本机设备号 {replica}。",
        },
        "bad_url": {
            "en": "{url} is not a server address; write it as https://host or http://host:port.",
            "zh": "{url} 不是服务器地址；请写成 https://主机 或 http://主机:端口。",
        },
        "bad_key": {
            "en": "The station key must be 64 hexadecimal characters.",
            "zh": "驿站密钥必须是 64 位十六进制字符。",
        },
        "status_line": {"en": "{label}: {value}", "zh": "{label}：{value}"},
        "l_device": {"en": "Device", "zh": "设备"},
        "l_unsent": {"en": "Unsent changes", "zh": "待发送记录"},
        "l_carried": {"en": "Carried bundles", "zh": "代送数据包"},
        "l_last_sync": {"en": "Last sync", "zh": "上次同步"},
        "l_offset": {"en": "Clock offset", "zh": "时钟偏差"},
        "l_conflicts": {"en": "Conflicts", "zh": "冲突"},
        "l_refusals": {"en": "Refused by the server", "zh": "被服务器拒收"},
        "l_held": {"en": "Kept until the station's key arrives", "zh": "等待驿站密钥、暂不发送"},
        "station_key_refused": {
            "en": "Refused the station key the server offers; this handheld keeps the one it has: {problem}",
            "zh": "已拒绝服务器提供的驿站密钥，本机继续使用原有密钥：{problem}",
        },
        "held": {
            "en": "{held} change(s) hold free text and stay on this handheld, unsent, until it has the station's key "
            "(it learns it at a sync once the station registers it).",
            "zh": "{held} 条记录含有文字内容，在本机取得驿站密钥前不会发送（驿站登记密钥后，下次同步即可取得）。",
        },
        "l_holding": {"en": "Parcels you hold", "zh": "你手上的邮件"},
        "never": {"en": "never", "zh": "从未同步"},
        "none": {"en": "none", "zh": "无"},
        "carry_new": {
            "en": "Carrying bundle {bundle} from device {origin}: {ops} change(s); its private parts are sealed. "
            "It goes to the server with your next sync.",
            "zh": "已收下设备 {origin} 的数据包 {bundle}：{ops} 条记录，隐私内容已加密。下次同步时送达服务器。",
        },
        "carry_dup": {
            "en": "Already carrying bundle {bundle}; nothing changed.",
            "zh": "数据包 {bundle} 已在本机，未作改动。",
        },
        "carry_empty": {"en": "No bundles carried.", "zh": "没有代送的数据包。"},
        "carry_row": {
            "en": "{bundle}  device {origin}  {ops} change(s)  {status}{reason}",
            "zh": "{bundle}  设备 {origin}  {ops} 条记录  {status}{reason}",
        },
        "carry_exported": {
            "en": "Wrote {n} answer(s) for device {device} to {file}: give the file to that device "
            "(caresync bundle import FILE).",
            "zh": "已把设备 {device} 的 {n} 个回执写入 {file}：请交给该设备导入（caresync bundle import 文件）。",
        },
        "bundle_written": {
            "en": "Wrote {ops} unsent change(s) to {file} (bundle {bundle}, valid until {until}). Give it to a "
            "courier; your changes stay here until the answer comes back.",
            "zh": "已把 {ops} 条待发送记录写入 {file}（数据包 {bundle}，有效期至 {until}）。请交给外卖员代送；"
            "回执带回之前，记录仍保存在本机。",
        },
        "bundle_imported": {
            "en": "Imported {answers} answer(s): {received} new change(s), {acked} of yours confirmed by the server, "
            "{refused} refused.",
            "zh": "已导入 {answers} 个回执：新记录 {received} 条，服务器确认收到你的 {acked} 条，拒收 {refused} 条。",
        },
        "bundle_more": {
            "en": "The server has more for this device: write another bundle.",
            "zh": "服务器还有更多数据：请再导出一个数据包。",
        },
        "usage": {
            "en": "Usage error: {detail} Run caresync-courier --help.",
            "zh": "用法错误：{detail} 请运行 caresync-courier --help 查看用法。",
        },
        "error": {"en": "{detail}", "zh": "操作未完成：{detail}"},
        "io_error": {
            "en": "Cannot use the folder {path}: {detail}. Choose another with --home.",
            "zh": "无法使用文件夹 {path}：{detail}。请用 --home 换一个文件夹。",
        },
        "aborted": {"en": "Stopped.", "zh": "已停止。"},
        "s_carried": {"en": "waiting for sync", "zh": "待送达"},
        "s_delivered": {"en": "delivered, answer in the bag", "zh": "已送达，回执在本机"},
        "s_handed_back": {"en": "answer handed back", "zh": "回执已交回"},
        "s_refused": {"en": "refused", "zh": "被拒收"},
        "s_expired": {"en": "expired", "zh": "已过期"},
    }
)

#: The library's errors said again in the reader's language, by their ``key`` (``CaresyncError.key``), with the
#: values of their ``fields``: people's names (a ticket's number, a status in words), never internal codes. A test
#: checks that every key the library raises is here, with the same fields in both languages.
_LIB: dict[str, tuple[str, str]] = {
    "record.not_found": (
        "本设备上没有{noun} {ref}：请检查编号，或同步后再试。",
        "No {noun} {ref} on this device. Check it, or sync to fetch it from the station.",
    ),
    "ticket.not_found": (
        "本设备上没有编号为 {ref} 的诉求：请核对回执上的编号，或同步后再试。",
        "No ticket with number {ref} on this device. Check the number on the slip, or sync to fetch it.",
    ),
    "ticket.refused": (
        "诉求 {number} {status}，不能{action}：{hint}。",
        "Ticket {number} is {status}; cannot {action} it: {hint}.",
    ),
    "ticket.top_grid": (
        "诉求 {number} 已在最上级网格（{grid}），不能再上报。",
        "Ticket {number} is already at the top grid ({grid}); it cannot be escalated further.",
    ),
    "ticket.needs_outcome": (
        "诉求 {number} 是矛盾纠纷：请先记录调解结果（已调解、未调成或已转交），再回单。",
        "Ticket {number} is a dispute: record the mediation outcome (settled, not settled or referred) before "
        "closing it.",
    ),
    "ticket.cannot_rate": ("无法评价诉求 {number}", "Cannot rate ticket {number}"),
    "ticket.rate_not_closed": (
        "诉求 {number} {status}：结果回复居民（回单）后才能评价。",
        "Ticket {number} is {status}: a rating is given once the result is returned to the resident (close the "
        "ticket first).",
    ),
    "ticket.already_rated": (
        "诉求 {number} 已评价 {score}/5；每次回单只评价一次（如需再办，先重开再回单，然后评价）。",
        "Ticket {number} is already rated {score}/5; a rating is given once per return (reopen and close it again "
        "for a new round of work, then rate that).",
    ),
    "ticket.not_dispute": (
        "诉求 {number} 不是矛盾纠纷；只有纠纷才有调解记录。",
        "Ticket {number} is not a dispute; only disputes have mediation records.",
    ),
    "ticket.number_shared": (
        "编号 {number} 属于 {count} 个诉求：{named}。请改用诉求的记录号。",
        "The number {number} belongs to {count} tickets: {named}. Give the ticket's record id instead.",
    ),
    "ticket.tail_shared": (
        "{ref} 是多个诉求编号的结尾（{numbers}）；请输入完整编号。",
        "{ref} is the end of several ticket numbers ({numbers}); give the whole number.",
    ),
    "conflict.which": ("找不到冲突 {key}", "Cannot find conflict {key}"),
    "conflict.not_found": (
        "本设备上没有未处理的冲突 {key}：可能已经处理；请重新查看列表。",
        "No unresolved conflict {key} on this device: it may be settled already; list the queue again.",
    ),
    "conflict.no_value": (
        "{key}：状态或交接冲突的处理方式是确认当前状态（不给值），或记录下一步操作或交接。",
        "{key}: a status or custody conflict is settled by confirming the current state (no value), or by "
        "recording the next transition or hand-over.",
    ),
    "conflict.custody": (
        "包裹 {parcel}：交接冲突要通过记录下一次交接来解决。",
        "Parcel {parcel}: custody conflicts are settled by recording the next hand-over.",
    ),
    "grid.unknown": ("本系统没有网格 {grid}", "No grid {grid} in this deployment"),
    "grid.unknown_new": (
        "本系统没有网格 {grid}（如果是新网格，请加上 --new-grid）",
        "No grid {grid} in this deployment (if it is a new grid, say so with --new-grid)",
    ),
    "worker.duplicate": (
        "{name} 已登记为{role}（{id}）；请修改那条记录，不要重复添加同一个人。",
        "{name} is already registered as {role} ({id}); change that record instead of adding the same person twice.",
    ),
    "worker.no_grids": (
        "工作人员 {name} 没有负责的网格；请先为其指定网格。",
        "Worker {name} has no grids; give them grids first.",
    ),
    "worker.not_found": (
        "本设备上没有工作人员 {name}：请先添加（caresync worker add）并指定网格，或同步。",
        "No worker {name} on this device: add them with their grids (caresync worker add), or sync.",
    ),
    "knock.not_flagged": (
        "居民 {resident} 未被标记（没有连续两次无人应答，上次敲门也不是身体不适或紧急情况）；如需帮助请直接下单。",
        "Resident {resident} is not flagged (no two unanswered knocks, last knock not unwell or emergency); submit a "
        "ticket instead if help is needed.",
    ),
    "knock.already_raised": (
        "居民 {resident} 已有一个由敲门发起、尚未办结的诉求：{number}。",
        "Resident {resident} already has an open request from a knock: {number}.",
    ),
    "resident.name_shared": (
        "有 {count} 位居民叫 {name}：{named}。请改用居民的记录号。",
        "{count} residents are named {name}: {named}. Give the resident's id instead.",
    ),
    "resident.not_found": (
        "本设备上没有名为 {ref} 的居民（也没有这个记录号）：请核对姓名，或同步后再试。",
        "No resident named {ref} (nor with that id) on this device. Check the name, or sync to fetch them.",
    ),
    # the replica file (caresync.store)
    "store.not_replica": ("无法读取 {path}：{what}。", "Cannot read {path}: {what}."),
    "store.no_device_key": (
        "无法读取 {path}：其中没有设备密钥，不是完整的数据文件。",
        "Cannot read {path}: it holds no device key, so it is not a whole replica.",
    ),
    "store.cut_off": (
        "数据文件 {path} 上次同步中途被打断：请先运行一次 caresync sync（或任何会记录内容的命令）完成它，再读取。",
        "The replica file {path} was left by a sync that was cut off; run caresync sync (or any command that "
        "records something) once to finish it, then read it.",
    ),
    "store.cannot_open": ("无法打开数据文件 {path}：{reason}", "Cannot open the replica file {path}: {reason}"),
    "store.newer": (
        "数据文件 {path} 的结构版本是 {version}，比本程序能读的（{known}）新；请升级 caresync 后再打开。",
        "The replica file {path} has schema version {version}, newer than this caresync understands ({known}); "
        "upgrade caresync to open it.",
    ),
    "store.read_only": (
        "数据文件 {path} 以只读方式打开；没有做任何修改。",
        "The replica file {path} is open for reading only; nothing was changed.",
    ),
    "store.cannot_write": ("无法写入数据文件 {path}：{reason}", "Cannot write to the replica file {path}: {reason}"),
    "store.not_written": (
        "数据文件 {path} 无法写入：{reason}",
        "The replica file {path} could not be written: {reason}",
    ),
    "store.cannot_use": (
        "数据文件 {path} 无法读写：{reason}",
        "The replica file {path} could not be read or written: {reason}",
    ),
    "store.cannot_read": ("数据文件 {path} 无法读取：{reason}", "The replica file {path} could not be read: {reason}"),
    "store.no_chain": (
        "数据文件 {path} 缺少本设备签名的第 {seq} 条操作，无法接续。",
        "The replica file {path} lacks this device's signed op {seq}: cannot chain to it.",
    ),
    "store.fork": (
        "有两条不同的操作都自称是 {origin}:{seq}。设备 {origin} 可能是从备份恢复的，或被复制到了另一部手机；请停用那份"
        "副本，并请驿站重新登记该设备。这一批内容都没有应用。",
        "Two different ops both claim to be op {origin}:{seq}. The device {origin} was probably restored from a "
        "backup or copied to another phone; stop using that copy and ask the station to re-enrol it. Nothing from "
        "this batch was applied.",
    ),
    "store.pull_mode": ("无法设置拉取方式", "Cannot set the pull mode"),
    "store.list_columns": ("无法列出记录", "Cannot list records"),
    "store.other_key": ("不能用另一台设备的密钥打开 {path}", "Cannot open {path} with another device's key"),
    "store.older": (
        "数据文件 {path} 是较旧版本的 caresync 写的；"
        "请先运行一次 caresync sync（或任何会记录内容的命令）升级它，再读取。",
        "The replica file {path} was written by an older caresync; run caresync sync (or any command that records "
        "something) once to upgrade it, then read it.",
    ),
    "store.fork_chain": (
        "操作 {origin}:{seq}（{what}）：其设备 {origin} 签了两段不同的历史。"
        "它可能是从备份恢复的，或被复制到了另一部手机；请停用那份副本，并请驿站重新登记该设备。这一批内容都没有应用。",
        "Op {origin}:{seq} {what}: its device {origin} signed two different histories. It was probably restored "
        "from a backup or copied to another phone; stop using that copy and ask the station to re-enrol it. "
        "Nothing from this batch was applied.",
    ),
    "numbers.bad_block": ("无法添加这段诉求编号", "Cannot add the block of ticket numbers"),
    "numbers.overlap": (
        "编号段 {start}-{end} 与本设备已有的编号段 {held_start}-{held_end} 重叠；请向驿站申请新的编号段。",
        "The block {start}-{end} overlaps the block {held_start}-{held_end} this device already holds; ask the "
        "station for a new block.",
    ),
    # the station's key (caresync.sync.stationkey, the device's pinned key)
    "station_key.not_key": ("这不是驿站密钥", "Not a station key"),
    "station_key.pinned": (
        "本设备保存的驿站密钥是 {kept}（最先得知的）；只接受由它签名的轮换密钥。没有做任何修改。",
        "This device keeps station key {kept} (learned first); it takes another one only as a rotation signed by "
        "that key. Nothing changed.",
    ),
    "station_key.offer_refused": (
        "同步服务器提供的驿站密钥 {offered} 不是本设备最先得知的那个（{kept}），也没有它签名的轮换："
        "已拒绝。本设备继续用原有密钥加密；请联系驿站。",
        "The sync server offers station key {offered}, not the one this device learned first ({kept}), with no "
        "rotation signed by it: refused. This device keeps sealing to the key it has; ask the station.",
    ),
    "station_key.already_held": (
        "本设备已经持有驿站密钥：如需更换请轮换（caresync station-key rotate）。",
        "This device already holds the station's key: rotate it (caresync station-key rotate).",
    ),
    "station_key.server_kept": (
        "本设备保存着其服务器的驿站密钥：驿站密钥只在驿站自己的设备上生成一次；如需更换，请在那台设备上轮换。",
        "This device keeps the station key of its server: the station's key is made once, on the station's own "
        "device; to change it, rotate it there.",
    ),
    "station_key.none_made": (
        "本设备还没有生成驿站密钥：caresync station-key create。",
        "This device made no station key: caresync station-key create.",
    ),
    "station_key.none_to_rotate": (
        "本设备没有可轮换的驿站密钥：caresync station-key create。",
        "This device holds no station key to rotate: caresync station-key create.",
    ),
    "station_key.not_desk": (
        "只有持有驿站签名密钥的驿站前台才能发放读取密钥。",
        "Only the station's desk, holding the station's signing key, grants readers' keys.",
    ),
    "sync.not_enrolled_station": (
        "本设备尚未在同步服务器登记：请先把它登记为驿站设备。",
        "This device is not enrolled with a sync server: enrol it as a station device first.",
    ),
    # relay bundles and the courier's bag (caresync.sync.bundles)
    "bundle.too_big": (
        "{path} 比任何 caresync 数据包都大，不是数据包。",
        "{path} is larger than any caresync bundle; it is not one.",
    ),
    "bundle.cannot_read": ("无法读取 {path}：{reason}。", "Cannot read {path}: {reason}."),
    "bundle.not_json": (
        "{path} 不是 caresync 数据包（不是 JSON：文件已损坏或是别的文件）。",
        "{path} is not a caresync bundle (not JSON: the file is damaged or of another kind).",
    ),
    "bundle.not_bundle": ("{path} 不是 caresync 数据包。", "{path} is not a caresync bundle."),
    "bundle.format": (
        "{path} 是格式 {format} 的数据包；本程序只读格式 1。",
        "{path} is a bundle of format {format}; this caresync reads format 1.",
    ),
    "bundle.unknown_type": (
        "{path} 是未知类型 {type} 的 caresync 文件。",
        "{path} is a caresync file of unknown type {type}.",
    ),
    "bundle.damaged_fields": (
        "这个数据包已损坏（字段 {fields} 缺失或有误）。",
        "This bundle is damaged (fields {fields} missing or wrong).",
    ),
    "bundle.damaged_key": (
        "数据包 {bundle} 已损坏：其中的密钥或签名不是长度正确的十六进制。",
        "Bundle {bundle} is damaged: its key or signature is not hex of the right size.",
    ),
    "bundle.forged": (
        "数据包 {bundle} 自称来自设备 {origin}，带的却是设备 {owner} 的密钥：是伪造的。不要携带。",
        "Bundle {bundle} claims to come from device {origin} but carries the key of device {owner}: it was forged. "
        "Do not carry it.",
    ),
    "bundle.altered": (
        "设备 {origin} 的数据包 {bundle} 与签名不符：设备写出后被改动过。不要携带；请设备重新生成。",
        "Bundle {bundle} from device {origin} does not match its signature: it was altered after the device wrote "
        "it. Do not carry it; ask for a new one.",
    ),
    "bundle.expired": (
        "设备 {origin} 的数据包 {bundle} 已过期；其中内容没有丢失（仍在设备上）：请设备重新生成数据包。",
        "Bundle {bundle} from device {origin} expired; nothing in it was lost (its ops stay on the device): ask the "
        "device for a new bundle.",
    ),
    "bundle.blobs_not_list": (
        "数据包 {bundle} 已损坏：其中的附件不是列表。",
        "Bundle {bundle} is damaged: its blobs are not a list.",
    ),
    "bundle.damaged_blob": (
        "数据包 {bundle} 带的附件已损坏（{reason}）。",
        "Bundle {bundle} carries a damaged blob ({reason}).",
    ),
    "bundle.cannot_write": (
        "无法写入 {path}：{reason}。请检查文件夹和剩余空间。",
        "Cannot write {path}: {reason}. Check the folder and free space.",
    ),
    "bundle.answer_not_ours": (
        "这份回执无法用本设备的密钥打开：它是给别的设备的，或已损坏。",
        "This answer cannot be opened with this device's key: it is for another device, or damaged.",
    ),
    "bundle.bad_ttl": ("无法生成数据包", "Cannot make a bundle"),
    "bundle.answer_forged": (
        "回执 {answer} 不是本设备所知的同步服务器签名的：途中被改动或伪造。"
        "没有应用其中任何内容；未发送的工作仍在排队。",
        "Answer {answer} is not signed by the sync server this device knows: it was altered or forged on the way. "
        "Nothing of it was applied; your unsent work stays queued.",
    ),
    "bundle.ops_not_answers": (
        "{path} 是发给服务器的操作数据包，不是给设备的回执：请交给邮递员携带。",
        "{path} is a bundle of ops for the server, not answers for a device: give it to a courier to carry.",
    ),
    "bundle.answer_damaged": (
        "回执 {answer} 能打开但已损坏（{reason}）；没有应用其中任何内容。",
        "Answer {answer} opened but is damaged ({reason}); nothing of it was applied.",
    ),
    "bundle.no_usable_answer": (
        "{path} 中没有本设备能用的回执：{skipped}。",
        "{path} holds no answer this device can use: {skipped}.",
    ),
    "relay.unreadable_answer": (
        "位于 {url} 的同步服务器发来的转交回执本机无法读取",
        "The sync server at {url} sent a relay answer this handheld cannot read",
    ),
    "bag.cannot_open": ("无法打开邮递员的邮袋 {path}：{reason}", "Cannot open the courier's bag {path}: {reason}"),
    "bag.newer": (
        "邮递员的邮袋 {path} 是较新版本的 caresync 写的（邮袋版本 {version}）；"
        "请升级本机的 caresync 后再读。其中内容没有改动。",
        "The courier's bag {path} was written by a newer caresync (bag version {version}); upgrade caresync on "
        "this handheld to read it. Nothing in it was changed.",
    ),
    "bag.answers_not_bundle": (
        "{path} 是给设备的回执，不是要投递的数据包：请交给那台设备。",
        "{path} holds answers for a device, not a bundle to deliver: give it to the device.",
    ),
    "bag.no_bundle": (
        "邮袋里没有数据包 {bundle}；`carry list` 可查看邮袋里有什么。",
        "The bag holds no bundle {bundle}; `carry list` shows what it holds.",
    ),
    "bag.several_bundles": (
        "邮袋里有多个数据包 {bundle}，分别来自设备 {devices}；请指明设备。",
        "The bag holds several bundles {bundle}, from devices {devices}; name the device.",
    ),
    "bag.no_answer": (
        "邮袋里没有给 {device} 的回执（有回执的设备：{held}）。请先同步，取回所携数据包的回执。",
        "The bag holds no answer for {device} (devices with answers: {held}). Sync first to fetch the answers of "
        "the bundles you carry.",
    ),
    "bag.several_answers": (
        "邮袋里有多台设备的回执都匹配 {device}（有回执的设备：{held}）。请先同步，取回所携数据包的回执。",
        "The bag holds answers for several devices for {device} (devices with answers: {held}). Sync first to "
        "fetch the answers of the bundles you carry.",
    ),
    # attachments (caresync.replica.Attachments, caresync.core.media)
    "attachment.settings": ("这些附件设置不能使用", "These attachment settings cannot be used"),
    "attachment.cannot": ("无法添加这个附件", "Cannot attach this"),
    "attachment.cannot_attach": ("无法添加这个{noun}", "Cannot attach this {noun}"),
    "attachment.cannot_attach_file": ("无法添加 {path}", "Cannot attach {path}"),
    "attachment.cannot_attach_to": ("无法添加附件到 {ref}", "Cannot attach to {ref}"),
    "attachment.removed": ("附件 {attachment} 已被删除。", "Attachment {attachment} was removed."),
    "attachment.removed_from": (
        "{ref} 的附件 {attachment} 已被删除。",
        "Attachment {attachment} of {ref} was removed.",
    ),
    "attachment.not_found": (
        "本设备上没有附件 {attachment}。请检查编号，或同步后再试。",
        "No attachment {attachment} on this device. Check the id, or sync to fetch it.",
    ),
    "attachment.erased": (
        "附件 {attachment} 已随居民的资料一并抹除：无法打开。",
        "Attachment {attachment} was erased with its resident's data: it cannot be opened.",
    ),
    "attachment.sealed": (
        "附件 {attachment} 已加密给驿站：本设备没有打开它的密钥。",
        "Attachment {attachment} is sealed to the station: this device does not hold the key to open it.",
    ),
    "attachment.no_thumbnail": (
        "附件 {attachment} 没有缩略图（它是{noun}）。",
        "Attachment {attachment} has no thumbnail (it is a {noun}).",
    ),
    "attachment.not_here": (
        "附件 {attachment} 的{part}还不在本设备上：请同步，或用 replica.attachments.fetch() 取回。",
        "The {part} of attachment {attachment} is not on this device yet: sync, or fetch it with "
        "replica.attachments.fetch().",
    ),
    "attachment.cannot_write": ("无法写入 {path}", "Cannot write {path}"),
    "attachment.cannot_fetch": ("无法取回附件", "Cannot fetch"),
    "sync.not_enrolled_fetch": (
        "本设备尚未在同步服务器登记：请提供服务器地址和令牌再取回。",
        "This device is not enrolled with a sync server: give url and token to fetch.",
    ),
    # syncing with the server (caresync.sync)
    "sync.unreachable": (
        "连不上同步服务器 {url}（{reason}）。数据保存在本设备上；有网络时再同步。",
        "Cannot reach the sync server at {url} ({reason}). Your work is kept on this device; sync again when the "
        "network is back.",
    ),
    "sync.deadline": (
        "同步服务器 {url} 在 {seconds} 秒（同步总时限，--deadline）内没有应答。数据保存在本设备上；网络好些时再同步。",
        "No answer from the sync server at {url} for {seconds} s, the sync's deadline (--deadline). Your work is "
        "kept on this device; sync again when the network is better.",
    ),
    "sync.unreadable_answer_at": (
        "同步服务器 {url} 的应答本设备无法读取：{reason}",
        "The sync server at {url} sent an answer this device cannot read: {reason}",
    ),
    "sync.unreadable_answer": (
        "同步服务器的应答本设备无法读取（{reason}）",
        "The sync server sent an answer this device cannot read ({reason})",
    ),
    "sync.not_an_object": (
        "同步服务器的应答本设备无法读取（不是 JSON 对象）",
        "The sync server sent an answer this device cannot read (not a JSON object)",
    ),
    "sync.server_problem": (
        "同步服务器 {url} 出了问题（HTTP {status}：{message}）。数据保存在本设备上；请稍后再试，或告知驿站。",
        "The sync server at {url} has a problem (HTTP {status}: {message}). Your work is kept on this device; try "
        "again later or tell the station.",
    ),
    "sync.refused": (
        "同步服务器拒绝了本设备：{message}（HTTP {status}，{code}）",
        "The sync server refused this device: {message} (HTTP {status}, {code})",
    ),
    "sync.ops_refused": (
        "同步服务器 {url} 发来的操作本设备拒收（{reason}）；那一批内容都没有应用。请告知驿站。",
        "The sync server at {url} sent ops this device refuses ({reason}); nothing of that batch was applied. "
        "Tell the station.",
    ),
    "sync.unreadable_push_answer": (
        "同步服务器 {url} 对上传的应答本设备无法读取",
        "The sync server at {url} sent a push answer this device cannot read",
    ),
    "sync.unreadable_pull_answer": (
        "同步服务器 {url} 对下载的应答本设备无法读取",
        "The sync server at {url} sent a pull answer this device cannot read",
    ),
    "sync.not_enrolled": (
        "本设备尚未在同步服务器登记：请向驿站要一个登记码，然后 replica.enroll(server_url, code)。",
        "This device is not enrolled with a sync server: ask the station for an enrolment code, then "
        "replica.enroll(server_url, code).",
    ),
    "sync.not_enrolled_admin": (
        "本设备尚未在同步服务器登记：请先把它登记为驿站设备（replica.enroll(server_url, code)）。",
        "This device is not enrolled with a sync server: enrol it as a station device first "
        "(replica.enroll(server_url, code)).",
    ),
    "enrol.cannot": ("无法登记本设备", "Cannot enrol this device"),
    "enrol.unreadable_credentials": (
        "同步服务器发来的凭据本设备无法读取（{reason}）；请重试。",
        "The sync server sent credentials this device cannot read ({reason}); try again.",
    ),
    "enrol.wrong_replica": (
        "同步服务器把本设备绑定到了数据文件 {replica}，而不是 {device}。",
        "The sync server bound this device to replica {replica}, not {device}.",
    ),
    "enrol.server_too_old": (
        "同步服务器 {url} 版本太旧，不能更新令牌；请联系驿站。",
        "The sync server at {url} is too old to renew tokens; ask the station.",
    ),
    "enrol.unreadable_device": (
        "同步服务器发来的设备说明本设备无法读取（{reason}）",
        "The sync server sent a device description this device cannot read ({reason})",
    ),
    "admin.unreadable_device": (
        "同步服务器发来的设备信息本程序无法读取（{reason}）",
        "The sync server sent a device this caresync cannot read ({reason})",
    ),
    "blob.bad_manifest": (
        "同步服务器为附件 {blob}… 提供的分块清单不属于它（{reason}）",
        "The sync server offered a chunk list for blob {blob}… that is not that blob's ({reason})",
    ),
    "station_key.chain_not_list": ("驿站密钥链不是列表。", "The station key chain is not a list."),
    "grid_keys.unreadable_readers": (
        "同步服务器列出的读取人本设备无法读取（{reason}）。",
        "The sync server listed readers this device cannot read ({reason}).",
    ),
    "grid_keys.unreadable_keys": (
        "同步服务器列出的读取密钥本设备无法读取（{reason}）。",
        "The sync server listed readers' keys this device cannot read ({reason}).",
    ),
    "grid_keys.not_desk": (
        "只有持有签名密钥的驿站前台才能发放读取密钥。",
        "Only the station's desk, holding its signing key, grants readers' keys.",
    ),
    "grid_keys.readers_forbidden": (
        "同步服务器只向驿站设备或范围为全部网格的管理设备列出读取人。",
        "The sync server lists readers only to a station or admin device whose scope is everywhere.",
    ),
    # keys, signatures and sealed values (caresync.trust)
    "trust.not_station_public_key": ("这不是驿站公钥", "Not a station public key"),
    "station_key.not_from_station": (
        "同步服务器提供驿站密钥 {offered}，但本设备最先得知的驿站密钥（{kept}）签过的轮换都到不了它：它不是驿站生成的。"
        "本设备继续用原有密钥加密；请联系驿站。",
        "The sync server offers station key {offered}, and no rotation signed by the station key this device "
        "learned first ({kept}) leads to it: it was not made by the station. This device keeps sealing to the key it "
        "has; ask the station.",
    ),
    "station_key.rotation_unsigned": (
        "同步服务器把驿站密钥 {offered} 当作 {before} 的轮换，但旧密钥没有签名：已拒绝。本设备继续用原有密钥加密；"
        "请联系驿站。",
        "The sync server offers station key {offered} as a rotation of {before}, but the old key did not sign it: "
        "refused. This device keeps sealing to the key it has; ask the station.",
    ),
    "trust.sealed_damaged": (
        "这个加密值已损坏：不是 sealed:1:<base64> 或 sealed:2:<base64>。",
        "This sealed value is damaged: it is not sealed:1:<base64> or sealed:2:<base64>.",
    ),
    "trust.sealed_not_ours": (
        "这个加密值用这把密钥打不开：它是加密给别的驿站或别的读取人的，或已被改动。",
        "This sealed value cannot be opened with this key: it was sealed to another station or to other readers, "
        "or altered.",
    ),
    "trust.sealed_not_caresync": (
        "这个加密值能打开，但里面不是 caresync 的内容：是别的程序生成的。",
        "This sealed value opened but holds no caresync value: it was made by another program.",
    ),
    "trust.altered": (
        "拒收了一条与其设备签名不符的修改：途中被改动或伪造。这一批内容都没有应用；请告诉驿站它来自哪台设备或哪个数据包",
        "Refused a change that is not what its device signed: it was altered on the way, or forged. Nothing from "
        "this batch was applied; tell the station which device or bundle it came from",
    ),
    "blob.chunks_not_its": (
        "为附件 {blob}… 提供的分块清单不属于它：已拒绝。",
        "The chunk list offered for blob {blob}… is not that blob's: refused.",
    ),
    "blob.chunk_damaged": (
        "附件 {blob}… 的第 {n} 块到达时已损坏：已拒绝；会重新获取。",
        "Chunk {n} of blob {blob}… arrived damaged: refused; it is fetched again.",
    ),
    "attachment.cannot_open": (
        "这个附件打不开：密钥不符，或内容被改动过。",
        "This attachment cannot be opened: its key does not fit, or its bytes were altered.",
    ),
    "grid_keys.wrap_not_ours": (
        "这份读取密钥用本设备的密钥打不开：不是给本设备的，或已损坏。",
        "A readers' key wrap cannot be opened with this device's key: not for it, or damaged.",
    ),
    "grid_keys.wrap_unpublished": (
        "{grid} 的 {role} 第 {version} 版读取密钥包装里的密钥不是驿站发布的：已拒绝。",
        "A readers' key wrap for the {role}s of {grid}, version {version}, holds a key the station did not "
        "publish: refused.",
    ),
    # the words inside them
    "noun.ticket": ("诉求", "ticket"),
    "noun.resident": ("居民", "resident"),
    "noun.visit": ("敲门记录", "visit"),
    "noun.worker": ("工作人员", "worker"),
    "noun.mailbox": ("邮筒", "mailbox"),
    "noun.parcel": ("包裹", "parcel"),
    "noun.photo": ("照片", "photo"),
    "noun.signature": ("签名", "signature"),
    "noun.document": ("文件", "document"),
    "noun.picture": ("图片", "picture"),
    "noun.thumbnail": ("缩略图", "thumbnail"),
    "noun.data": ("文件", "data"),
    "noun.image": ("图片", "image"),
    "action.accept": ("接单", "accept"),
    "action.start": ("开始办理", "start"),
    "action.resolve": ("办结", "resolve"),
    "action.close": ("回单", "close"),
    "action.cancel": ("取消", "cancel"),
    "action.reopen": ("重开", "reopen"),
    "action.escalate": ("上报", "escalate"),
    "action.confirm": ("确认", "confirm"),
    "hint.accept": ("只有已下单的诉求才能接单", "only a submitted ticket can be accepted"),
    "hint.start": ("请先接单", "accept the ticket first"),
    "hint.resolve": ("只有办理中的诉求才能办结", "only an open ticket can be resolved"),
    "hint.close": ("请先办结，再把结果回复居民", "resolve the ticket before returning it to the resident"),
    "hint.cancel": ("只有未办结的诉求才能取消", "only an open ticket can be cancelled"),
    "hint.reopen": (
        "只有已办结、已回单或已取消的诉求才能重开",
        "only a resolved, closed or cancelled ticket can be reopened",
    ),
    "hint.escalate": ("只有未办结的诉求才能上报", "only an open ticket can be escalated"),
    "hint.confirm": ("现在不可行", "not allowed now"),
}

#: ``LIBRARY_ERRORS("ticket.refused", "zh", number=..., ...)``: see :data:`_LIB`.
LIBRARY_ERRORS = Catalog({key: {"zh": zh, "en": en} for key, (zh, en) in _LIB.items()})
