"""English and Chinese strings of the storefront and console.

`?lang=en|zh` switches (and a cookie remembers it); otherwise the browser's Accept-Language
decides. A string missing in Chinese falls back to English, so no page ever shows a bare key.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

LANGS = ("en", "zh")

STRINGS: dict[str, tuple[str, str]] = {
    # key: (English, Chinese)
    "shop": ("modelshop", "模型商店"),
    "tagline": ("Text classification models, ready to call over HTTP.", "开箱即用的文本分类模型，通过 HTTP 调用。"),
    "models": ("Models", "模型"),
    "no_models": ("No model is in production yet.", "暂无上线的模型。"),
    "open": ("Open", "查看"),
    "labels": ("Labels", "标签"),
    "model_card": ("Model card", "模型卡"),
    "recommended": ("Recommended", "推荐"),
    "figures": ("Evaluation figures", "评估指标"),
    "metric": ("Metric", "指标"),
    "this_model": ("This model", "本模型"),
    "baseline": ("tf-idf baseline", "tf-idf 基线"),
    "per_class": ("Per class", "各类别"),
    "per_language": ("Per language", "各语言"),
    "label": ("Label", "标签"),
    "precision": ("Precision", "精确率"),
    "recall": ("Recall", "召回率"),
    "support": ("Support", "样本数"),
    "charts": ("Charts", "图表"),
    "full_card": ("Full model card (Markdown)", "完整模型卡（Markdown）"),
    "data_profile": ("Training data", "训练数据"),
    "rows": ("Rows", "行数"),
    "imbalance": ("Imbalance ratio", "类别不平衡比"),
    "tokens_per_text": ("Tokens per text (p50 / p95 / max)", "每条文本词元数（p50 / p95 / 最大）"),
    "duplicates": ("Exact / near duplicates", "完全 / 近似重复"),
    "conflicts": ("Conflicting labels", "标签冲突"),
    "pii": ("PII found", "发现的个人信息"),
    "none": ("none", "无"),
    "latency": ("Measured latency", "实测延迟"),
    "latency_live": ("Mean inference time per request over the last 30 days: {ms} ms ({n} calls)",
                     "最近 30 天每个请求的平均推理时间：{ms} 毫秒（{n} 次调用）"),
    "latency_none": ("No production calls in the last 30 days yet.", "最近 30 天暂无线上调用。"),
    "throughput": ("Measured throughput of this version: {tps} texts/s", "本版本实测吞吐：每秒 {tps} 条文本"),
    "playground": ("Playground", "在线试用"),
    "playground_hint": ("Type a text and see the model's labels (a demo with a tight rate limit).",
                        "输入一段文本，查看模型给出的标签（演示用，限流较严）。"),
    "try": ("Try it", "试一试"),
    "needs_js": ("The playground needs JavaScript; everything else works without it.",
                 "在线试用需要 JavaScript；其余功能无需 JavaScript。"),
    "pricing": ("Pricing", "价格"),
    "plan": ("Plan", "套餐"),
    "base_fee": ("Base fee", "基础费用"),
    "per_interval": ("per {interval}", "每{interval}"),
    "month": ("month", "月"),
    "year": ("year", "年"),
    "usage_prices": ("Usage", "用量计费"),
    "quota": ("Quota", "配额"),
    "free": ("free", "免费"),
    "prepaid": ("prepaid credits", "预付费额度"),
    "signup": ("Sign up", "注册"),
    "signup_hint": ("Create an account and get an API key at once.", "创建账户，立即获得 API 密钥。"),
    "email": ("E-mail", "电子邮箱"),
    "create_account": ("Create account and key", "创建账户和密钥"),
    "welcome": ("Welcome, {name}!", "欢迎，{name}！"),
    "your_key": ("Your API key", "您的 API 密钥"),
    "key_once": ("This is the only time the key is shown. Copy it now and keep it secret.",
                 "密钥只显示这一次。请立即复制并妥善保管。"),
    "call_it": ("Call the model with it", "用它调用模型"),
    "back": ("Back", "返回"),
    "language": ("Language", "语言"),
    "error": ("Something is not right", "出了点问题"),
    "chat_open": ("💬 Questions? Chat with us", "💬 有问题？在线咨询"),
    "chat_title": ("Customer service", "在线客服"),
    "chat_close": ("Close the chat", "关闭对话"),
    "chat_hello": ("Hello! Ask me anything about our service.", "您好！有什么可以帮您？"),
    "chat_placeholder": ("Type your question", "请输入您的问题"),
    "chat_send": ("Send", "发送"),
    "chat_helpful": ("Helpful?", "有帮助吗？"),
    "chat_thanks": ("Thanks for your feedback!", "感谢您的反馈！"),
    "chat_sorry": ("Sorry, the chat is not available right now.", "抱歉，在线客服暂时不可用。"),
    # console
    "console": ("Console", "控制台"),
    "login": ("Log in", "登录"),
    "logout": ("Log out", "退出"),
    "paste_key": ("Paste your admin or partner key", "粘贴管理员或合作伙伴密钥"),
    "why_unauthorized": ("Log in to continue: you were not logged in, or your session ended (logout, "
                         "expiry or a revoked key).",
                         "请登录后继续：您尚未登录，或会话已结束（退出、过期或密钥已吊销）。"),
    "why_forbidden": ("This account cannot use the console right now.", "此账户目前无法使用控制台。"),
    "overview": ("Overview", "概览"),
    "customers": ("Customers", "客户"),
    "keys": ("Keys", "密钥"),
    "invoices": ("Invoices", "发票"),
    "channels": ("Channels", "渠道"),
    "partners": ("Partners", "合作伙伴"),
    "commissions": ("Commissions", "佣金"),
    "usage_revenue": ("Usage and revenue over time", "用量与收入趋势"),
    "funnel": ("Funnel", "转化漏斗"),
    "cohorts": ("Cohort retention", "同期群留存"),
    "unit_economics": ("CAC, LTV and ROI", "获客成本、生命周期价值与投资回报"),
    "period": ("Month", "月份"),
    "show": ("Show", "显示"),
    "partner_view": ("Partner", "合作伙伴"),
    "payouts": ("Payout statements", "结算单"),
    "labelling": ("Labelling", "数据标注"),
    "tickets": ("Tickets", "工单"),
    "tickets_hint": (("Conversations the bots handed to a person. Your answer appears in the customer's chat "
                      "and the bot takes over again."),
                     "机器人转给人工的对话。您的回复会显示在客户的对话中，之后由机器人继续接待。"),
    "no_tickets": ("No open tickets.", "没有待处理的工单。"),
    "answer": ("Answer", "回复"),
    "answered": ("Answered", "已回复"),
    "label_queue": ("Labelling queue", "待标注队列"),
    "label_hint": (("Messages the bot was unsure of and replies users rated down. A label puts the message "
                    "into the next version of its dataset; retrain from that version with `modelshop train`."),
                   ("机器人没有把握的消息和用户差评的回复。标注后的消息会进入其数据集的下一个版本；"
                    "用 `modelshop train` 从该版本重新训练。")),
    "no_pending": ("Nothing to label.", "没有待标注的消息。"),
    "datasets": ("Dataset versions", "数据集版本"),
    "export_version": ("Export the next version", "导出下一个版本"),
    "labelled_since": ("{n} labelled since its last version", "自上个版本以来已标注 {n} 条"),
}


def language(request: Request) -> str:
    """?lang=, else the ms_lang cookie, else the browser's preference, else English."""
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return asked
    cookie = request.cookies.get("ms_lang")
    if cookie in LANGS:
        return cookie
    accept = request.headers.get("accept-language", "").lower()
    return "zh" if accept.startswith("zh") else "en"


def translator(lang: str) -> Callable[..., str]:
    index = LANGS.index(lang) if lang in LANGS else 0

    def t(key: str, **values: object) -> str:
        pair = STRINGS.get(key)
        text = (pair[index] or pair[0]) if pair else key
        return text.format(**values) if values else text

    return t
