"""What each kind of import file holds: the target table, its fields, keys and required fields.

A :class:`Field` is one column of the target table that a file column can feed. Its ``type`` says
how the text (or Parquet value) is parsed: ``text``, ``int``, ``rating`` (an int from 1 to 5),
``money`` (DECIMAL(18,2), thousands separators and ``¥`` allowed), ``timestamp`` (UTC),
``date``, ``json`` (an object) or ``message_type`` (track, identify, page …). Aliases are other
header names that map to the field on their own — English spellings and the Chinese headers that
Chinese shop, CRM and ERP exports use (手机号, 订单号, 下单时间, 实付金额 …).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIELD_TYPES = ("text", "int", "rating", "money", "timestamp", "date", "json", "message_type")

#: How a type is named in a reject reason ("cannot parse 'abc' as a timestamp").
TYPE_NOUNS = {
    "text": "text",
    "int": "a whole number",
    "rating": "a rating from 1 to 5",
    "money": "an amount of money",
    "timestamp": "a timestamp",
    "date": "a date",
    "json": "a JSON object",
    "message_type": "a message type (track, identify, page, screen, group, alias)",
}


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "text"
    required: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    """One kind of file: ``tessera import <name> FILE`` stores it into ``table``."""

    name: str
    table: str
    key: tuple[str, ...]
    fields: tuple[Field, ...]
    #: The JSON column that receives file columns no field takes.
    extras: str = "attributes"
    #: Whether the table has ``source_id`` (set from ``--source``) and ``updated_at``.
    has_source: bool = False
    has_updated_at: bool = False
    #: Groups of fields of which the file needs at least one column (besides required fields).
    needs_one_of: tuple[tuple[str, ...], ...] = ()
    #: Fields computed when the file has no column for them (order line numbers, message ids).
    generated: tuple[str, ...] = ()
    #: (field, column name): a second column read where the field's own column is empty — a page
    #: view's ``name`` is its event name, as in the collection API.
    secondary: tuple[tuple[str, str], ...] = ()
    description: str = ""
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


def _f(name: str, type: str = "text", *aliases: str, required: bool = False) -> Field:
    assert type in FIELD_TYPES, type
    return Field(name, type, required, aliases)


_CUSTOMER_ID = ("客户id", "客户编号", "用户id", "user_id", "买家id", "会员id")
_ORDER_ID = ("订单号", "订单编号", "订单id", "单号")
_ORDERED_AT = ("下单时间", "订单时间", "创建时间", "付款时间", "支付时间", "order_time", "order_date", "created_at")
_ORDER_TOTAL = ("金额", "实付金额", "订单金额", "实付款", "支付金额", "实收金额", "amount", "order_total")
_PRODUCT_ID = ("商品id", "商品编号", "商品编码", "货号", "sku", "sku_id", "款号")

CUSTOMERS = Kind(
    name="customers",
    table="customers",
    key=("customer_id",),
    has_source=True,
    has_updated_at=True,
    description="CRM / member records (会员); customer_id is the brand's user id (Segment userId).",
    fields=(
        _f("customer_id", "text", *_CUSTOMER_ID, "userid", required=True),
        _f("member_id", "text", "会员号", "会员卡号", "会员编号", "card_no"),
        _f("name", "text", "姓名", "名字", "客户姓名", "会员姓名", "full_name"),
        _f("gender", "text", "性别", "sex"),
        _f("birthday", "date", "生日", "出生日期", "birth_date", "date_of_birth", "dob"),
        _f("phone", "text", "手机号", "手机号码", "手机", "电话", "联系电话", "mobile", "phone_number", "tel"),
        _f("email", "text", "邮箱", "电子邮件", "电子邮箱", "email_address", "e_mail"),
        _f("wechat_unionid", "text", "unionid", "union_id", "微信unionid"),
        _f("wechat_openid", "text", "openid", "open_id", "微信openid"),
        _f("tmall_id", "text", "天猫id", "淘宝id", "taobao_id"),
        _f("jd_id", "text", "京东id"),
        _f("douyin_id", "text", "抖音id"),
        _f("province", "text", "省份", "省"),
        _f("city", "text", "城市", "市"),
        _f("member_level", "text", "会员等级", "等级", "level", "tier"),
        _f("points", "int", "积分", "会员积分"),
        _f("registered_at", "timestamp", "注册时间", "注册日期", "入会时间", "created_at", "signup_at"),
        _f("channel", "text", "渠道", "注册渠道", "来源渠道", "来源"),
        _f("attributes", "json"),
    ),
)

PRODUCTS = Kind(
    name="products",
    table="products",
    key=("product_id",),
    has_updated_at=True,
    description="The product catalogue (商品).",
    fields=(
        _f("product_id", "text", *_PRODUCT_ID, required=True),
        _f("name", "text", "商品名称", "商品名", "名称", "品名", "title", "product_name"),
        _f("name_en", "text", "英文名", "英文名称", "english_name"),
        _f("category", "text", "品类", "类目", "分类", "一级类目"),
        _f("subcategory", "text", "子类目", "子分类", "二级类目", "sub_category"),
        _f("brand", "text", "品牌"),
        _f("colour", "text", "颜色", "color"),
        _f("size", "text", "尺码", "规格", "尺寸"),
        _f("price", "money", "价格", "售价", "单价", "吊牌价", "list_price"),
        _f("currency", "text", "币种", "货币"),
        _f("attributes", "json"),
    ),
)

ORDERS = Kind(
    name="orders",
    table="orders",
    key=("order_id",),
    has_source=True,
    description="Orders (订单) from shops, marketplaces and stores.",
    fields=(
        _f("order_id", "text", *_ORDER_ID, required=True),
        _f("customer_id", "text", *_CUSTOMER_ID),
        _f("channel", "text", "渠道", "销售渠道", "平台", "来源"),
        _f("store_id", "text", "门店", "门店编号", "门店id", "店铺", "店铺id", "shop_id"),
        _f("status", "text", "订单状态", "状态", "order_status"),
        _f("ordered_at", "timestamp", *_ORDERED_AT, required=True),
        _f("total", "money", *_ORDER_TOTAL, required=True),
        _f("discount", "money", "优惠", "优惠金额", "折扣", "折扣金额", "discount_amount"),
        _f("shipping", "money", "运费", "shipping_fee", "freight"),
        _f("currency", "text", "币种", "货币"),
        _f("coupon_code", "text", "优惠券", "优惠券码", "券码", "coupon"),
        _f("member_id", "text", "会员号", "会员卡号", "会员编号"),
        _f("phone", "text", "手机号", "手机号码", "手机", "电话", "联系电话", "收货人手机", "mobile"),
        _f("email", "text", "邮箱", "电子邮件"),
        _f("wechat_unionid", "text", "unionid", "union_id"),
        _f("tmall_id", "text", "天猫id", "淘宝id", "taobao_id"),
        _f("jd_id", "text", "京东id"),
        _f("attributes", "json"),
    ),
)

ORDER_ITEMS = Kind(
    name="order-items",
    table="order_items",
    key=("order_id", "line_no"),
    generated=("line_no",),
    description="Order lines (订单明细); line_no is numbered per order in file order when absent.",
    fields=(
        _f("order_id", "text", *_ORDER_ID, required=True),
        _f("line_no", "int", "行号", "序号", "line", "line_number", "item_no"),
        _f("product_id", "text", *_PRODUCT_ID, required=True),
        _f("quantity", "int", "数量", "购买数量", "件数", "qty", required=True),
        _f("unit_price", "money", "单价", "成交价", "price"),
        _f("amount", "money", "金额", "小计", "商品金额", "实付金额", "line_total", "total"),
        _f("attributes", "json"),
    ),
)

REVIEWS = Kind(
    name="reviews",
    table="reviews",
    key=("review_id",),
    description="Product reviews (评价) with a 1–5 rating.",
    fields=(
        _f("review_id", "text", "评价id", "评论id", "评价编号", required=True),
        _f("order_id", "text", *_ORDER_ID),
        _f("product_id", "text", *_PRODUCT_ID),
        _f("customer_id", "text", *_CUSTOMER_ID),
        _f("rating", "rating", "评分", "星级", "打分", "score", "stars", required=True),
        _f("title", "text", "标题"),
        _f("body", "text", "内容", "评价内容", "评论内容", "content", "text", "comment"),
        _f("language", "text", "语言", "lang"),
        _f("created_at", "timestamp", "评价时间", "评论时间", "创建时间", "reviewed_at"),
        _f("attributes", "json"),
    ),
)

EVENTS = Kind(
    name="events",
    table="events",
    key=("message_id",),
    extras="properties",
    has_source=True,
    generated=("message_id",),
    secondary=(("event", "name"),),
    needs_one_of=(("type", "event"), ("user_id", "anonymous_id")),
    description="Behaviour events (行为事件) in Segment's shape, e.g. an export of another CDP.",
    fields=(
        _f("message_id", "text", "消息id", "事件id", "event_uuid", "uuid"),
        _f("type", "message_type", "类型", "消息类型"),
        _f("event", "text", "事件", "事件名", "事件名称", "event_name", "name"),
        _f("user_id", "text", "用户id", "会员id", "客户id", "distinct_id"),
        _f("anonymous_id", "text", "匿名id", "设备匿名id"),
        _f("group_id", "text"),
        _f("previous_id", "text"),
        _f(
            "timestamp",
            "timestamp",
            "时间",
            "时间戳",
            "发生时间",
            "事件时间",
            "time",
            "ts",
            "event_time",
            required=True,
        ),
        _f("original_timestamp", "timestamp"),
        _f("sent_at", "timestamp"),
        _f("received_at", "timestamp"),
        _f("revenue", "money", "收入", "金额"),
        _f("currency", "text", "币种"),
        _f("order_id", "text", *_ORDER_ID),
        _f("product_id", "text", *_PRODUCT_ID),
        _f("category", "text", "类目", "分类"),
        _f("channel", "text", "渠道"),
        _f("device_id", "text", "设备id"),
        _f("ip", "text", "ip地址"),
        _f("utm_source", "text"),
        _f("utm_medium", "text"),
        _f("utm_campaign", "text"),
        _f("utm_term", "text"),
        _f("utm_content", "text"),
        _f("properties", "json", "属性"),
        _f("traits", "json"),
        _f("context", "json"),
    ),
)

KINDS: dict[str, Kind] = {k.name: k for k in (CUSTOMERS, ORDERS, ORDER_ITEMS, PRODUCTS, REVIEWS, EVENTS)}


def kind_names() -> list[str]:
    return list(KINDS)


def find_kind(name: str) -> Kind | None:
    """The kind named ``name``; ``order_items`` and ``order-items`` are the same kind."""
    return KINDS.get(name.strip().lower().replace("_", "-"))
