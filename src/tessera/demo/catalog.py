"""The demo brand's catalogue (商品): categories, styles, colours, sizes and SKUs, plus a sampler.

A *style* (款) comes in a few colours; a style-colour comes in sizes; each size is one SKU, one
``product_id``. About 450 SKUs, prices in CNY. Category demand follows the season
(:data:`MONTH_WEIGHTS`): down jackets in winter, tents and quick-dry in summer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tessera.demo import frames
from tessera.demo.texts import APPAREL_SIZES, BRAND_FULL, SHOE_SIZES

# (code, zh, en, [(sub code, zh, en, price low, price high, size kind, genders)])
CATEGORIES: list[tuple[str, str, str, list[tuple[str, str, str, int, int, str, str]]]] = [
    ("jackets", "冲锋衣", "Jackets", [
        ("hardshell", "硬壳冲锋衣", "Hardshell Jacket", 899, 2999, "apparel", "mw"),
        ("three_in_one", "三合一冲锋衣", "3-in-1 Jacket", 999, 2499, "apparel", "mw"),
        ("softshell", "软壳外套", "Softshell Jacket", 499, 1299, "apparel", "mw"),
    ]),
    ("down", "羽绒服", "Down", [
        ("light_down", "轻薄羽绒服", "Light Down Jacket", 699, 1299, "apparel", "mw"),
        ("hooded_down", "连帽羽绒服", "Hooded Down Jacket", 1199, 2499, "apparel", "mw"),
        ("long_down", "长款羽绒服", "Long Down Parka", 1599, 3999, "apparel", "mw"),
    ]),
    ("shoes", "徒步鞋", "Hiking Shoes", [
        ("mid_boot", "中帮徒步鞋", "Mid Hiking Boot", 799, 1599, "shoes", "mw"),
        ("low_shoe", "低帮徒步鞋", "Low Hiking Shoe", 599, 1199, "shoes", "mw"),
        ("trail_run", "越野跑鞋", "Trail Running Shoe", 699, 1399, "shoes", "u"),
    ]),
    ("backpacks", "背包", "Backpacks", [
        ("daypack", "日常双肩包", "Daypack", 199, 599, "volume", "u"),
        ("trekking_pack", "登山包", "Trekking Pack", 699, 1599, "volume", "u"),
        ("waist_pack", "腰包", "Waist Pack", 99, 299, "one", "u"),
    ]),
    ("tents", "帐篷", "Tents", [
        ("backpacking_tent", "轻量帐篷", "Backpacking Tent", 899, 2599, "capacity", "u"),
        ("family_tent", "家庭帐篷", "Family Tent", 999, 3999, "capacity", "u"),
        ("tarp", "天幕", "Tarp", 399, 1299, "one", "u"),
    ]),
    ("quick_dry", "速干", "Quick-dry", [
        ("qd_tee", "速干T恤", "Quick-dry Tee", 149, 299, "apparel", "mw"),
        ("qd_pants", "速干裤", "Quick-dry Trousers", 299, 599, "apparel", "mw"),
        ("sun_hoodie", "防晒衣", "UPF50+ Sun Hoodie", 299, 699, "apparel", "mw"),
    ]),
    ("accessories", "配件", "Accessories", [
        ("poles", "登山杖", "Trekking Poles", 199, 599, "one", "u"),
        ("socks", "户外袜", "Hiking Socks", 49, 99, "one", "u"),
        ("headlamp", "头灯", "Headlamp", 129, 399, "one", "u"),
        ("sun_hat", "遮阳帽", "Sun Hat", 99, 249, "one", "u"),
        ("gloves", "手套", "Gloves", 99, 299, "one", "u"),
    ]),
    ("camping", "露营装备", "Camping", [
        ("sleeping_bag", "睡袋", "Sleeping Bag", 399, 1999, "one", "u"),
        ("sleeping_pad", "防潮垫", "Sleeping Pad", 199, 699, "one", "u"),
        ("camp_chair", "露营椅", "Camp Chair", 199, 499, "one", "u"),
    ]),
]  # fmt: skip
CATEGORY_CODES = [c[0] for c in CATEGORIES]
CATEGORY_ZH = [c[1] for c in CATEGORIES]
CATEGORY_EN = [c[2] for c in CATEGORIES]

#: Relative demand per category (rows, in CATEGORIES order) by month (columns, Jan..Dec).
MONTH_WEIGHTS = np.array([
    [1.4, 1.0, 1.6, 1.6, 1.1, 0.7, 0.6, 0.7, 1.3, 1.9, 2.0, 1.6],  # jackets
    [3.2, 2.0, 0.6, 0.2, 0.1, 0.1, 0.1, 0.1, 0.3, 1.3, 3.2, 3.6],  # down
    [0.7, 0.7, 1.4, 1.7, 1.6, 1.3, 1.1, 1.1, 1.4, 1.6, 1.2, 0.8],  # shoes
    [0.7, 0.7, 1.2, 1.5, 1.5, 1.3, 1.3, 1.2, 1.3, 1.4, 1.1, 0.8],  # backpacks
    [0.2, 0.3, 0.8, 1.6, 2.3, 2.3, 2.0, 1.8, 1.2, 1.0, 0.5, 0.2],  # tents
    [0.3, 0.3, 0.7, 1.3, 2.2, 2.8, 2.9, 2.5, 1.4, 0.8, 0.5, 0.3],  # quick_dry
    [1.0, 0.9, 1.0, 1.1, 1.1, 1.1, 1.0, 1.0, 1.0, 1.1, 1.3, 1.2],  # accessories
    [0.3, 0.3, 0.7, 1.3, 1.9, 2.0, 1.9, 1.7, 1.2, 1.1, 0.6, 0.3],  # camping
])  # fmt: skip

SERIES = [
    ("远山", "Ridge"), ("云岭", "Cloudpeak"), ("朔风", "Northwind"), ("青峰", "Greenpeak"), ("逐光", "Chaser"),
    ("轻羽", "Featherlite"), ("极境", "Extreme"), ("行者", "Trekker"), ("山岚", "Mist"), ("苍穹", "Skyline"),
]  # fmt: skip
COLOURS = [
    ("黑色", "Black", "BK"), ("藏青", "Navy", "NV"), ("橄榄绿", "Olive", "OL"), ("砖红", "Brick Red", "RD"),
    ("雾蓝", "Fog Blue", "BL"), ("卡其", "Khaki", "KH"), ("亮橙", "Blaze Orange", "OR"), ("米白", "Ivory", "WH"),
    ("深灰", "Charcoal", "GY"), ("薄荷绿", "Mint", "MT"),
]  # fmt: skip
_GENDER = {"m": ("男款", "Men's", "men"), "w": ("女款", "Women's", "women"), "u": ("", "", "unisex")}
# Size ranges (start index, count) in APPAREL_SIZES / SHOE_SIZES by gender.
_APPAREL_RANGE = {"m": (1, 5), "w": (0, 5), "u": (1, 5)}
_SHOE_RANGE = {"m": (3, 7), "w": (0, 6), "u": (1, 9)}

PRODUCT_SCHEMA = pa.schema([
    ("product_id", pa.string()), ("name", pa.string()), ("name_en", pa.string()), ("category", pa.string()),
    ("subcategory", pa.string()), ("brand", pa.string()), ("colour", pa.string()), ("size", pa.string()),
    ("price", frames.MONEY), ("currency", pa.string()), ("attributes", pa.string()),
])  # fmt: skip


@dataclass
class Catalog:
    """Products (one row per SKU) and the style-colour groups the sampler draws from."""

    table: pa.Table
    price_cents: np.ndarray  # per product
    category: np.ndarray  # per product, index into CATEGORIES
    product_ids: pa.Array
    group_first: np.ndarray  # per group: first product row
    group_count: np.ndarray  # per group: number of sizes
    group_kind: np.ndarray  # 0 one size, 1 apparel, 2 shoes
    group_size_start: np.ndarray  # index into APPAREL_SIZES / SHOE_SIZES
    group_category: np.ndarray
    _group_cum: np.ndarray  # category index + normalised cumulative popularity, ascending

    @property
    def size(self) -> int:
        return self.table.num_rows

    def sample(
        self,
        rng: np.random.Generator,
        category: np.ndarray,
        apparel_size: np.ndarray,
        shoe_size: np.ndarray,
    ) -> np.ndarray:
        """A product row per draw: a popular style-colour of ``category`` in the person's size."""
        n = len(category)
        u = rng.random(n) * (1 - 1e-9)
        g = np.searchsorted(self._group_cum, category + u, side="right")
        g = np.minimum(g, len(self.group_first) - 1)
        kind = self.group_kind[g]
        wanted = np.where(kind == 2, shoe_size, apparel_size) - self.group_size_start[g]
        wanted = wanted + np.where(rng.random(n) < 0.12, rng.integers(-1, 2, n), 0)  # a size up or down
        offset = np.clip(wanted, 0, self.group_count[g] - 1)
        offset = np.where(kind == 0, 0, offset)
        return self.group_first[g] + offset


def _price(rng: np.random.Generator, low: int, high: int) -> int:
    raw = low + (high - low) * rng.random() ** 1.3
    return max(int(round(raw / 100.0)) * 100 - 1, 49) if raw >= 150 else int(raw // 10) * 10 + 9


def build_catalog(seed: int) -> Catalog:
    """The catalogue for ``seed`` (independent of the number of users)."""
    rng = np.random.default_rng([seed, 0xCA7])
    rows: list[dict[str, object]] = []
    cents: list[int] = []
    cats: list[int] = []
    g_first: list[int] = []
    g_count: list[int] = []
    g_kind: list[int] = []
    g_start: list[int] = []
    g_cat: list[int] = []
    g_pop: list[float] = []
    style_no = 0
    for ci, (ccode, czh, cen, subs) in enumerate(CATEGORIES):
        for sub_code, szh, sen, low, high, kind, genders in subs:
            n_styles = int(rng.integers(2, 4))
            for s in range(n_styles):
                style_no += 1
                series_zh, series_en = SERIES[int(rng.integers(0, len(SERIES)))]
                gender_key = genders[s % len(genders)]
                g_zh, g_en, g_code = _GENDER[gender_key]
                price = _price(rng, low, high)
                style_id = f"{ccode[:2].upper()}{style_no:03d}"
                colour_idx = rng.choice(len(COLOURS), size=int(rng.integers(2, 4)), replace=False)
                if kind == "apparel":
                    start, count = _APPAREL_RANGE[gender_key]
                    sizes, size_kind = APPAREL_SIZES[start : start + count], 1
                elif kind == "shoes":
                    start, count = _SHOE_RANGE[gender_key]
                    sizes, size_kind = SHOE_SIZES[start : start + count], 2
                elif kind == "volume":
                    start, size_kind = 0, 0
                    sizes = [
                        str(
                            int(rng.choice([18, 20, 24, 28]))
                            if sub_code == "daypack"
                            else int(rng.choice([38, 45, 55]))
                        )
                        + "L"
                    ]
                elif kind == "capacity":
                    start, size_kind = 0, 0
                    sizes = [
                        f"{int(rng.choice([1, 2, 3]) if sub_code == 'backpacking_tent' else rng.choice([4, 6]))}人"
                    ]
                else:
                    start, size_kind, sizes = 0, 0, ["均码"]
                popularity = float(rng.lognormal(0.0, 0.8))
                for c in colour_idx:
                    colour_zh, colour_en, colour_code = COLOURS[int(c)]
                    g_first.append(len(rows))
                    g_count.append(len(sizes))
                    g_kind.append(size_kind)
                    g_start.append(start)
                    g_cat.append(ci)
                    g_pop.append(popularity * float(rng.uniform(0.5, 1.5)))
                    for size in sizes:
                        size_en = size.replace("人", "P").replace("均码", "One Size")
                        name = f"{series_zh} {g_zh}{szh} {colour_zh} {size}".replace("  ", " ")
                        name_en = f"{series_en} {g_en} {sen} {colour_en} {size_en}".replace("  ", " ")
                        attrs = {
                            "category_en": cen, "subcategory_en": sen, "colour_en": colour_en, "gender": g_code,
                            "style_id": style_id, "series": series_en, "size_en": size_en,
                        }  # fmt: skip
                        rows.append({
                            "product_id": f"YS-{style_id}-{colour_code}-{size_en.replace(' ', '')}",
                            "name": name, "name_en": name_en, "category": czh, "subcategory": szh,
                            "brand": BRAND_FULL, "colour": colour_zh, "size": size, "currency": "CNY",
                            "attributes": json.dumps(attrs, ensure_ascii=False, separators=(",", ":")),
                        })  # fmt: skip
                        cents.append(price * 100)
                        cats.append(ci)
    price_cents = np.array(cents, dtype=np.int64)
    columns = {k: pa.array([r[k] for r in rows], pa.string()) for k in rows[0]}
    columns["price"] = frames.money(price_cents)
    table = pa.table(columns).select(PRODUCT_SCHEMA.names).cast(PRODUCT_SCHEMA)
    group_cat = np.array(g_cat, dtype=np.int64)
    pop = np.array(g_pop)
    cum = np.empty(len(pop))
    for ci in range(len(CATEGORIES)):
        sel = np.flatnonzero(group_cat == ci)
        cum[sel] = ci + np.cumsum(pop[sel]) / pop[sel].sum()
    return Catalog(
        table=table,
        price_cents=price_cents,
        category=np.array(cats, dtype=np.int64),
        product_ids=table.column("product_id").combine_chunks(),
        group_first=np.array(g_first, dtype=np.int64),
        group_count=np.array(g_count, dtype=np.int64),
        group_kind=np.array(g_kind, dtype=np.int64),
        group_size_start=np.array(g_start, dtype=np.int64),
        group_category=group_cat,
        _group_cum=cum,
    )
