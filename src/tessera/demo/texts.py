"""Words of the demo brand 远山户外 Yuanshan Outdoor: names, places, stores, campaigns, review phrases.

Plain data, no logic. Weights are rough shares (surnames after the 2020 census ranking, places by
online apparel spending); nothing here contains a quote or backslash, so JSON can be built fast.
"""

from __future__ import annotations

BRAND = "远山户外"
BRAND_EN = "Yuanshan Outdoor"
BRAND_FULL = f"{BRAND} {BRAND_EN}"

# (surname, pinyin, weight %)
SURNAMES: list[tuple[str, str, float]] = [
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.7), ("刘", "liu", 5.4), ("陈", "chen", 4.5),
    ("杨", "yang", 3.1), ("黄", "huang", 2.2), ("赵", "zhao", 2.1), ("吴", "wu", 2.0), ("周", "zhou", 1.9),
    ("徐", "xu", 1.5), ("孙", "sun", 1.5), ("马", "ma", 1.3), ("朱", "zhu", 1.3), ("胡", "hu", 1.3),
    ("郭", "guo", 1.1), ("何", "he", 1.1), ("林", "lin", 1.0), ("高", "gao", 1.0), ("罗", "luo", 0.9),
    ("郑", "zheng", 0.9), ("梁", "liang", 0.9), ("谢", "xie", 0.8), ("宋", "song", 0.7), ("唐", "tang", 0.7),
    ("许", "xu", 0.7), ("韩", "han", 0.6), ("冯", "feng", 0.6), ("邓", "deng", 0.6), ("曹", "cao", 0.6),
    ("彭", "peng", 0.5), ("曾", "zeng", 0.5), ("肖", "xiao", 0.5), ("田", "tian", 0.5), ("董", "dong", 0.5),
    ("袁", "yuan", 0.5), ("潘", "pan", 0.4), ("于", "yu", 0.4), ("蒋", "jiang", 0.4), ("蔡", "cai", 0.4),
    ("余", "yu", 0.4), ("杜", "du", 0.4), ("叶", "ye", 0.4), ("程", "cheng", 0.4), ("苏", "su", 0.3),
    ("魏", "wei", 0.3), ("吕", "lv", 0.3), ("丁", "ding", 0.3), ("任", "ren", 0.3), ("沈", "shen", 0.3),
    ("姚", "yao", 0.3), ("卢", "lu", 0.3), ("姜", "jiang", 0.3), ("崔", "cui", 0.3), ("钟", "zhong", 0.3),
    ("谭", "tan", 0.3), ("陆", "lu", 0.2), ("汪", "wang", 0.2), ("范", "fan", 0.2), ("金", "jin", 0.2),
    ("石", "shi", 0.2), ("廖", "liao", 0.2), ("贾", "jia", 0.2), ("夏", "xia", 0.2), ("韦", "wei", 0.2),
    ("欧阳", "ouyang", 0.08), ("司马", "sima", 0.02), ("上官", "shangguan", 0.02), ("诸葛", "zhuge", 0.01),
]  # fmt: skip

# Given-name characters (character, pinyin) by gender; a given name is one or two of them.
GIVEN_MALE: list[tuple[str, str]] = [
    ("伟", "wei"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("杰", "jie"),
    ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("浩", "hao"), ("宇", "yu"), ("鹏", "peng"), ("辉", "hui"),
    ("俊", "jun"), ("峰", "feng"), ("斌", "bin"), ("刚", "gang"), ("凯", "kai"), ("晨", "chen"), ("航", "hang"),
    ("博", "bo"), ("文", "wen"), ("轩", "xuan"), ("睿", "rui"), ("泽", "ze"), ("昊", "hao"), ("志", "zhi"),
    ("建", "jian"), ("子", "zi"), ("一", "yi"), ("天", "tian"), ("嘉", "jia"), ("立", "li"), ("林", "lin"),
]  # fmt: skip
GIVEN_FEMALE: list[tuple[str, str]] = [
    ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("婷", "ting"), ("雪", "xue"),
    ("琳", "lin"), ("颖", "ying"), ("欣", "xin"), ("怡", "yi"), ("佳", "jia"), ("悦", "yue"), ("萱", "xuan"),
    ("诗", "shi"), ("雨", "yu"), ("涵", "han"), ("梦", "meng"), ("晓", "xiao"), ("玲", "ling"), ("燕", "yan"),
    ("倩", "qian"), ("璐", "lu"), ("瑶", "yao"), ("思", "si"), ("可", "ke"), ("慧", "hui"), ("月", "yue"),
    ("彤", "tong"), ("子", "zi"), ("一", "yi"), ("文", "wen"), ("嘉", "jia"), ("清", "qing"), ("安", "an"),
]  # fmt: skip

ENGLISH_FIRST_MALE = [
    "James", "Oliver", "Lucas", "Daniel", "Thomas", "Henry", "Ethan", "Samuel", "Leo", "Noah", "Max", "Adam",
    "Felix", "Hugo", "Mark", "Paul", "Ryan", "Kevin", "Jonas", "Matteo",
]  # fmt: skip
ENGLISH_FIRST_FEMALE = [
    "Emma", "Olivia", "Sophie", "Charlotte", "Mia", "Chloe", "Hannah", "Grace", "Lily", "Anna", "Julia",
    "Laura", "Emily", "Sarah", "Clara", "Nina", "Ella", "Zoe", "Isabel", "Marie",
]  # fmt: skip
ENGLISH_LAST = [
    "Smith", "Brown", "Wilson", "Taylor", "Martin", "Walker", "Clarke", "Wright", "Müller", "Schmidt", "Dubois",
    "Rossi", "Jensen", "Novak", "Kim", "Tan", "Wong", "Lee", "Nguyen", "Anderson", "Evans", "Hughes",
]  # fmt: skip

# (province, city, weight): where members live.
PLACES: list[tuple[str, str, float]] = [
    ("上海", "上海", 8.5), ("北京", "北京", 8.0), ("广东", "深圳", 6.5), ("广东", "广州", 6.0), ("广东", "东莞", 1.6),
    ("广东", "佛山", 1.4), ("浙江", "杭州", 6.0), ("浙江", "宁波", 1.8), ("浙江", "温州", 1.2), ("江苏", "南京", 3.2),
    ("江苏", "苏州", 3.0), ("江苏", "无锡", 1.3), ("四川", "成都", 5.0), ("四川", "绵阳", 0.5), ("重庆", "重庆", 3.0),
    ("湖北", "武汉", 3.0), ("陕西", "西安", 2.6), ("山东", "济南", 1.4), ("山东", "青岛", 1.9), ("福建", "福州", 1.1),
    ("福建", "厦门", 1.5), ("河南", "郑州", 1.9), ("湖南", "长沙", 2.0), ("天津", "天津", 1.8), ("辽宁", "沈阳", 1.2),
    ("辽宁", "大连", 1.1), ("云南", "昆明", 1.4), ("云南", "大理", 0.4), ("安徽", "合肥", 1.5), ("河北", "石家庄", 0.9),
    ("河北", "张家口", 0.4), ("黑龙江", "哈尔滨", 1.0), ("吉林", "长春", 0.8), ("新疆", "乌鲁木齐", 0.7),
    ("西藏", "拉萨", 0.3), ("广西", "南宁", 0.8), ("广西", "桂林", 0.4), ("江西", "南昌", 0.9), ("山西", "太原", 0.8),
    ("贵州", "贵阳", 0.8), ("甘肃", "兰州", 0.6), ("内蒙古", "呼和浩特", 0.5), ("海南", "海口", 0.4),
    ("海南", "三亚", 0.4), ("青海", "西宁", 0.3), ("宁夏", "银川", 0.3), ("香港", "香港", 0.6),
]  # fmt: skip
#: Where international customers live (indexes are looked up by city in PLACES).
INTERNATIONAL_CITIES = {"上海": 4.0, "北京": 3.0, "深圳": 2.0, "广州": 1.0, "香港": 2.0, "成都": 0.5}

# Offline stores (线下门店): (store id, name, city).
STORES: list[tuple[str, str, str]] = [
    ("ST001", "远山户外 上海南京西路店", "上海"), ("ST002", "远山户外 上海静安嘉里店", "上海"),
    ("ST003", "远山户外 上海七宝店", "上海"), ("ST004", "远山户外 北京三里屯店", "北京"),
    ("ST005", "远山户外 北京西单店", "北京"), ("ST006", "远山户外 北京五道口店", "北京"),
    ("ST007", "远山户外 深圳万象天地店", "深圳"), ("ST008", "远山户外 深圳海岸城店", "深圳"),
    ("ST009", "远山户外 广州天河城店", "广州"), ("ST010", "远山户外 杭州湖滨银泰店", "杭州"),
    ("ST011", "远山户外 杭州西溪店", "杭州"), ("ST012", "远山户外 南京新街口店", "南京"),
    ("ST013", "远山户外 苏州观前街店", "苏州"), ("ST014", "远山户外 成都太古里店", "成都"),
    ("ST015", "远山户外 成都环球中心店", "成都"), ("ST016", "远山户外 重庆解放碑店", "重庆"),
    ("ST017", "远山户外 武汉楚河汉街店", "武汉"), ("ST018", "远山户外 西安大雁塔店", "西安"),
    ("ST019", "远山户外 青岛万象城店", "青岛"), ("ST020", "远山户外 厦门中山路店", "厦门"),
    ("ST021", "远山户外 长沙五一广场店", "长沙"), ("ST022", "远山户外 昆明南屏街店", "昆明"),
    ("ST023", "远山户外 天津大悦城店", "天津"), ("ST024", "远山户外 崇礼太舞店", "张家口"),
    ("ST025", "远山户外 大理古城店", "大理"), ("ST026", "远山户外 拉萨八廓街店", "拉萨"),
]  # fmt: skip

# Hiking / outdoor activities members register for (活动报名): (id, zh, en, city).
ACTIVITIES: list[tuple[str, str, str, str]] = [
    ("ACT01", "莫干山周末徒步", "Moganshan weekend hike", "杭州"),
    ("ACT02", "四姑娘山大峰登山营", "Siguniang Mountain climbing camp", "成都"),
    ("ACT03", "香山秋季登高", "Fragrant Hills autumn climb", "北京"),
    ("ACT04", "梧桐山夜徒步", "Wutong Mountain night hike", "深圳"),
    ("ACT05", "武功山露营节", "Wugong Mountain camping festival", "南昌"),
    ("ACT06", "崇礼冬季滑雪体验营", "Chongli winter ski camp", "张家口"),
    ("ACT07", "川西环线摄影徒步", "Western Sichuan photo trek", "成都"),
    ("ACT08", "苍山洱海越野跑", "Cangshan trail run", "大理"),
]  # fmt: skip

# Campaign calendar (营销活动): (key, zh name, utm_campaign stem, coupon code, threshold yuan, off yuan).
CAMPAIGNS: list[tuple[str, str, str, str, int, int]] = [
    ("double11", "双11 户外狂欢节", "double11", "D11-300-30", 300, 30),
    ("d618", "618 年中大促", "618", "618-500-60", 500, 60),
    ("cny", "年货节 · 滑雪季", "cny_ski", "CNY-800-100", 800, 100),
    ("spring", "春季徒步季", "spring_hiking", "SPRING-199-20", 199, 20),
    ("summer", "夏日露营节", "summer_camping", "CAMP-600-80", 600, 80),
    ("golden_week", "国庆出游季", "golden_week", "GW-400-50", 400, 50),
    ("double12", "双12 会员日", "double12", "D12-200-20", 200, 20),
]  # fmt: skip
#: Member coupons: (code, zh, threshold yuan, off yuan, percent off).
MEMBER_COUPONS: list[tuple[str, str, int, int, int]] = [
    ("NEWMEMBER-20", "新人券", 99, 20, 0),
    ("BDAY-50", "生日券", 199, 50, 0),
    ("VIP-95", "会员95折", 0, 0, 5),
]  # fmt: skip

# Paid / owned traffic sources for UTM: (utm_source, utm_medium, weight).
UTM_SOURCES: list[tuple[str, str, float]] = [
    ("douyin", "feed", 3.0), ("xiaohongshu", "kol", 2.5), ("wechat", "social", 2.5), ("wechat_moments", "cpc", 1.5),
    ("baidu", "cpc", 1.5), ("weibo", "social", 0.8), ("sms", "sms", 1.0), ("email", "email", 0.6),
    ("bilibili", "video", 0.6),
]  # fmt: skip
UTM_TERMS = ["冲锋衣", "羽绒服 推荐", "徒步鞋 防水", "登山包", "露营帐篷", "速干衣", "outdoor jacket"]
UTM_CONTENTS = ["banner_a", "banner_b", "video_15s", "kol_post", "poster"]

MEMBER_LEVELS = ["普通", "银卡", "金卡", "黑金"]
MEMBER_LEVELS_EN = ["Basic", "Silver", "Gold", "Black Gold"]
#: 12-month spend (yuan) at which each level starts.
LEVEL_THRESHOLDS = [0, 1000, 3000, 8000]

APPAREL_SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
SHOE_SIZES = ["36", "37", "38", "39", "40", "41", "42", "43", "44", "45"]

PHONE_PREFIXES: list[tuple[str, float]] = [
    ("130", 1.0), ("131", 1.0), ("132", 1.0), ("133", 1.0), ("134", 1.0), ("135", 1.6), ("136", 1.6),
    ("137", 1.6), ("138", 2.0), ("139", 2.0), ("147", 0.3), ("150", 1.2), ("151", 1.2), ("152", 1.0),
    ("153", 0.8), ("155", 0.8), ("156", 0.9), ("157", 0.6), ("158", 1.2), ("159", 1.2), ("166", 0.5),
    ("173", 0.5), ("176", 0.6), ("177", 0.6), ("178", 0.6), ("180", 1.0), ("181", 0.9), ("182", 1.0),
    ("183", 0.9), ("185", 1.0), ("186", 1.2), ("187", 1.2), ("188", 1.0), ("189", 1.1), ("191", 0.4),
    ("198", 0.5), ("199", 0.5),
]  # fmt: skip
EMAIL_DOMAINS_CN: list[tuple[str, float]] = [
    ("163.com", 3.0), ("126.com", 1.2), ("sina.com", 0.6), ("foxmail.com", 0.8), ("gmail.com", 0.8),
    ("outlook.com", 0.6), ("yeah.net", 0.3), ("139.com", 0.3),
]  # fmt: skip
EMAIL_DOMAINS_INTL: list[tuple[str, float]] = [("gmail.com", 4.0), ("outlook.com", 2.0), ("icloud.com", 1.5)]
NICK_WORDS = [
    "山野", "追风", "小鹿", "徒步", "行者", "云朵", "星河", "登山", "飞鸟", "阿楠", "橙子", "大熊", "海盐",
    "松果", "北极", "青柠", "旅人", "漫游", "koala", "panda", "sunny", "lucky",
]  # fmt: skip
NICK_ENDINGS = ["爱徒步", "去远方", "在路上", "的背包", "喜欢山", "_outdoor", "2019", "666", "_cn", "go"]

ANDROID_MODELS = [("HUAWEI", "Mate 60"), ("Xiaomi", "14"), ("OPPO", "Find X7"), ("vivo", "X100"), ("HONOR", "Magic6")]
IOS_MODELS = [("Apple", "iPhone15,2"), ("Apple", "iPhone16,1"), ("Apple", "iPhone14,5"), ("Apple", "iPhone13,2")]
PAYMENTS = ["alipay", "wechat_pay", "unionpay", "cash"]

# App screens / web pages a session lands on: (name, zh title, path).
LANDINGS: list[tuple[str, str, str]] = [
    ("Home", "首页", "/"),
    ("Campaign Landing", "活动会场", "/campaign"),
    ("Product List", "商品列表", "/products"),
    ("Member Center", "会员中心", "/member"),
    ("Store Locator", "门店查询", "/stores"),
]  # fmt: skip

# Review phrases: per language and tone, openers / closers / titles; per category the middle remark.
REVIEW_OPENERS = {
    ("zh", "positive"): ["质量很好，", "非常满意！", "第二次回购了，", "朋友推荐买的，", "做工扎实，", "颜值很高，"],
    ("zh", "neutral"): ["总体还行，", "中规中矩，", "一般般吧，"],
    ("zh", "negative"): ["有点失望，", "不太满意，", "和描述不符，", "质量一般，", "非常糟糕，"],
    ("en", "positive"): ["Great quality. ", "Really happy with it! ", "Bought it again. ", "Solid build. "],
    ("en", "neutral"): ["It's okay. ", "Average overall. ", "Does the job. "],
    ("en", "negative"): ["Disappointed. ", "Not what I expected. ", "Poor quality. ", "Quite bad. "],
}
REVIEW_CLOSERS = {
    ("zh", "positive"): ["推荐购买。", "下次还会再来。", "物流也很快。", "客服态度很好。", "五星好评！"],
    ("zh", "neutral"): ["价格再低一点就好了。", "物流有点慢。", "凑合能用。"],
    ("zh", "negative"): ["已申请退货。", "不推荐。", "希望改进。", "客服回复很慢。"],
    ("en", "positive"): ["Highly recommended.", "Fast delivery too.", "Will buy again.", "Five stars!"],
    ("en", "neutral"): ["A bit pricey.", "Delivery was slow.", "Fine for the price."],
    ("en", "negative"): ["Returned it.", "Would not recommend.", "Customer service was slow."],
}
REVIEW_TITLES = {
    ("zh", "positive"): ["很满意", "好评", "值得购买", "回购"],
    ("zh", "neutral"): ["还行", "一般"],
    ("zh", "negative"): ["失望", "差评", "不推荐", "质量问题"],
    ("en", "positive"): ["Love it", "Excellent", "Worth it", "Great gear"],
    ("en", "neutral"): ["Okay", "Average"],
    ("en", "negative"): ["Disappointing", "Poor quality", "Not recommended"],
}
#: category code → {(lang, tone): remarks}; "neutral" reuses the positive remarks with a neutral frame.
REVIEW_REMARKS: dict[str, dict[tuple[str, str], list[str]]] = {
    "jackets": {
        ("zh", "positive"): ["防水效果不错，下雨天徒步一点没湿，", "防风性能好，爬山时很暖和，"],
        ("zh", "negative"): ["下雨天还是渗水了，", "拉链不顺滑，用了两次就坏了，"],
        ("en", "positive"): ["Kept me dry on a rainy hike. ", "Blocks the wind well on the ridge. "],
        ("en", "negative"): ["It leaked in the first rain. ", "The zip broke after two uses. "],
    },
    "down": {
        ("zh", "positive"): ["很保暖，零下十度也不冷，", "充绒量足，轻便好收纳，"],
        ("zh", "negative"): ["跑绒严重，", "不够保暖，北方冬天扛不住，"],
        ("en", "positive"): ["Very warm at minus ten. ", "Light and packs small. "],
        ("en", "negative"): ["Feathers keep coming out. ", "Not warm enough for winter. "],
    },
    "shoes": {
        ("zh", "positive"): ["抓地力强，走碎石路很稳，", "鞋码标准，穿着不磨脚，"],
        ("zh", "negative"): ["尺码偏小，磨脚，", "鞋底开胶了，"],
        ("en", "positive"): ["Great grip on loose rock. ", "True to size and comfortable. "],
        ("en", "negative"): ["Runs small and gave me blisters. ", "The sole came off. "],
    },
    "backpacks": {
        ("zh", "positive"): ["背负系统舒服，负重也不累，", "容量大，分区合理，"],
        ("zh", "negative"): ["肩带缝线开了，", "背着不舒服，"],
        ("en", "positive"): ["Comfortable even when fully loaded. ", "Lots of room and smart pockets. "],
        ("en", "negative"): ["The strap seam split. ", "Uncomfortable to carry. "],
    },
    "tents": {
        ("zh", "positive"): ["搭建简单，十分钟就搭好，", "防雨效果好，晚上下雨没漏，"],
        ("zh", "negative"): ["杆子断了一根，", "说明书看不懂，搭了很久，"],
        ("en", "positive"): ["Pitched it in ten minutes. ", "Stayed dry through a night of rain. "],
        ("en", "negative"): ["One pole snapped. ", "The instructions are useless. "],
    },
    "quick_dry": {
        ("zh", "positive"): ["速干效果明显，出汗也不黏，", "面料轻薄透气，"],
        ("zh", "negative"): ["洗一次就起球，", "不透气，很闷热，"],
        ("en", "positive"): ["Dries fast, never sticky. ", "Light and breathable fabric. "],
        ("en", "negative"): ["Pilled after one wash. ", "Not breathable at all. "],
    },
    "accessories": {
        ("zh", "positive"): ["做工精致，性价比高，", "轻便实用，"],
        ("zh", "negative"): ["做工粗糙，", "用了几天就坏了，"],
        ("en", "positive"): ["Well made and good value. ", "Light and practical. "],
        ("en", "negative"): ["Cheaply made. ", "Broke within days. "],
    },
    "camping": {
        ("zh", "positive"): ["晚上很暖和，睡得很好，", "收纳体积小，"],
        ("zh", "negative"): ["有一股异味，", "拉链卡住了，"],
        ("en", "positive"): ["Warm and cosy at night. ", "Packs down small. "],
        ("en", "negative"): ["It has a strange smell. ", "The zip keeps jamming. "],
    },
}
