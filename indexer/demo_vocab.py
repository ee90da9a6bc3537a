"""Word lists for the demo catalogue: what a Chinese county library's shelves really hold.

Chinese words carry their pinyin, one syllable per character, so that generated CNMARC
records can have the pinyin subfields ($A) that real catalogues add. Classes are real
Chinese Library Classification (中图法) numbers with the subject headings a cataloguer
would give them; ISBN registrant prefixes are the publishers' real ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_SYLLABLES = re.compile(r"[A-Za-z0-9]+|\S")  # a Latin word counts as one syllable, each Han character as one


@dataclass(frozen=True)
class Word:
    zh: str
    pinyin: str  # one syllable per character, space separated

    def __add__(self, other: "Word") -> "Word":
        return Word(self.zh + other.zh, f"{self.pinyin} {other.pinyin}".strip())


def words(spec: str) -> tuple[Word, ...]:
    """`图书馆:tu shu guan, 阅读:yue du` -> Words (the syllable count must match the characters)."""
    result = []
    for entry in spec.split(","):
        zh, pinyin = (part.strip() for part in entry.split(":"))
        if len(pinyin.split()) != len(_SYLLABLES.findall(zh)):
            raise ValueError(f"demo vocabulary: {zh!r} and its pinyin {pinyin!r} differ in syllables")
        result.append(Word(zh, pinyin))
    return tuple(result)


@dataclass(frozen=True)
class ChineseSubject:
    """A CLC class, the 606 heading that goes with it, and title parts for books in it."""

    clc: str
    heading: Word
    subdivision: str          # 606$x
    topics: tuple[Word, ...]  # the first part of a title
    forms: tuple[Word, ...]   # what kind of book: 基础, 教程, 的故事 ...
    weight: int               # how common such books are on a county library's shelves
    fiction: bool = False


CHINESE_SUBJECTS: tuple[ChineseSubject, ...] = (
    ChineseSubject("G250", Word("图书馆学", "tu shu guan xue"), "教材",
                   words("图书馆学:tu shu guan xue, 图书馆:tu shu guan, 公共图书馆:gong gong tu shu guan, "
                         "基层图书馆:ji ceng tu shu guan"),
                   words("基础:ji chu, 概论:gai lun, 导论:dao lun, 教程:jiao cheng"), 3),
    ChineseSubject("G254", Word("文献编目", "wen xian bian mu"), "研究",
                   words("文献编目:wen xian bian mu, 信息组织:xin xi zu zhi, 信息检索:xin xi jian suo, "
                         "机读目录:ji du mu lu"),
                   words("教程:jiao cheng, 实务:shi wu, 手册:shou ce, 基础:ji chu"), 2),
    ChineseSubject("G252", Word("阅读", "yue du"), "推广",
                   words("阅读推广:yue du tui guang, 全民阅读:quan min yue du, 亲子阅读:qin zi yue du"),
                   words("实务:shi wu, 案例:an li, 指南:zhi nan"), 2),
    ChineseSubject("I247.5", Word("长篇小说", "chang pian xiao shuo"), "中国",
                   words("春天:chun tian, 河流:he liu, 故乡:gu xiang, 月光:yue guang, 山村:shan cun, "
                         "远方:yuan fang, 平原:ping yuan, 黄河:huang he, 大地:da di, 岁月:sui yue, "
                         "麦田:mai tian, 海风:hai feng, 老街:lao jie, 渡口:du kou"),
                   words("的故事:de gu shi, 之歌:zhi ge, 往事:wang shi, 人家:ren jia, 记忆:ji yi, "
                         "纪事:ji shi"), 14, fiction=True),
    ChineseSubject("I267", Word("散文集", "san wen ji"), "中国",
                   words("乡愁:xiang chou, 草木:cao mu, 四季:si ji, 故园:gu yuan, 炊烟:chui yan, 星空:xing kong"),
                   words("散记:san ji, 随笔:sui bi, 小集:xiao ji, 札记:zha ji"), 6, fiction=True),
    ChineseSubject("I287.5", Word("儿童小说", "er tong xiao shuo"), "中国",
                   words("小熊:xiao xiong, 萤火虫:ying huo chong, 小白兔:xiao bai tu, 小河马:xiao he ma, "
                         "纸飞机:zhi fei ji"),
                   words("的故事:de gu shi, 历险记:li xian ji, 去旅行:qu lv xing, 的秘密:de mi mi"), 9,
                   fiction=True),
    ChineseSubject("K20", Word("中国历史", "zhong guo li shi"), "通俗读物",
                   words("中国历史:zhong guo li shi, 秦汉:qin han, 唐宋:tang song, 明清:ming qing, "
                         "丝绸之路:si chou zhi lu"),
                   words("十讲:shi jiang, 简史:jian shi, 史话:shi hua, 通识:tong shi"), 6),
    ChineseSubject("K928.9", Word("旅游指南", "lv you zhi nan"), "中国",
                   words("山东:shan dong, 云南:yun nan, 广东:guang dong, 黄河三角洲:huang he san jiao zhou, "
                         "珠江三角洲:zhu jiang san jiao zhou"),
                   words("旅游指南:lv you zhi nan, 风物志:feng wu zhi, 自驾游:zi jia you"), 3),
    ChineseSubject("D923", Word("民法", "min fa"), "法律解释",
                   words("民法典:min fa dian, 合同法:he tong fa, 物权法:wu quan fa, 婚姻家庭法:hun yin jia ting fa"),
                   words("释义:shi yi, 学习读本:xue xi du ben, 案例精解:an li jing jie, 实务:shi wu"), 4),
    ChineseSubject("D922.5", Word("劳动法", "lao dong fa"), "基本知识",
                   words("劳动法:lao dong fa, 社会保险法:she hui bao xian fa, 劳动合同法:lao dong he tong fa"),
                   words("问答:wen da, 释义:shi yi, 普及读本:pu ji du ben"), 2),
    ChineseSubject("F320.3", Word("农村经济", "nong cun jing ji"), "研究",
                   words("乡村振兴:xiang cun zhen xing, 家庭农场:jia ting nong chang, "
                         "农民合作社:nong min he zuo she, 县域经济:xian yu jing ji"),
                   words("研究:yan jiu, 实务:shi wu, 指南:zhi nan, 案例:an li"), 4),
    ChineseSubject("F272", Word("企业管理", "qi ye guan li"), "研究",
                   words("企业管理:qi ye guan li, 团队管理:tuan dui guan li, 市场营销:shi chang ying xiao"),
                   words("实务:shi wu, 精要:jing yao, 概论:gai lun"), 3),
    ChineseSubject("S512.1", Word("小麦", "xiao mai"), "栽培技术",
                   words("小麦:xiao mai, 玉米:yu mi, 棉花:mian hua, 大豆:da dou"),
                   words("高产栽培技术:gao chan zai pei ji shu, 病虫害防治:bing chong hai fang zhi, "
                         "种植技术:zhong zhi ji shu"), 4),
    ChineseSubject("S63", Word("蔬菜园艺", "shu cai yuan yi"), "栽培技术",
                   words("蔬菜:shu cai, 果树:guo shu, 大棚蔬菜:da peng shu cai, 食用菌:shi yong jun"),
                   words("栽培技术:zai pei ji shu, 种植问答:zhong zhi wen da, 实用技术:shi yong ji shu"), 3),
    ChineseSubject("S8", Word("畜牧", "xu mu"), "饲养管理",
                   words("生猪:sheng zhu, 肉牛:rou niu, 蛋鸡:dan ji, 肉羊:rou yang"),
                   words("养殖技术:yang zhi ji shu, 疫病防治:yi bing fang zhi, 饲养管理:si yang guan li"), 2),
    ChineseSubject("R212", Word("养生", "yang sheng"), "中医",
                   words("中医养生:zhong yi yang sheng, 四季养生:si ji yang sheng, 本草:ben cao, 针灸:zhen jiu"),
                   words("入门:ru men, 百问:bai wen, 大全:da quan, 图解:tu jie"), 4),
    ChineseSubject("R47", Word("护理学", "hu li xue"), "教材",
                   words("护理学:hu li xue, 老年护理:lao nian hu li, 家庭护理:jia ting hu li"),
                   words("基础:ji chu, 手册:shou ce, 教程:jiao cheng"), 2),
    ChineseSubject("TP311.561", Word("程序设计", "cheng xu she ji"), "教材",
                   words("Python程序设计:Python cheng xu she ji, 数据结构:shu ju jie gou, "
                         "操作系统:cao zuo xi tong, 数据库系统:shu ju ku xi tong, 人工智能:ren gong zhi neng"),
                   words("基础:ji chu, 教程:jiao cheng, 入门:ru men, 实战:shi zhan"), 4),
    ChineseSubject("O13", Word("高等数学", "gao deng shu xue"), "高等学校",
                   words("高等数学:gao deng shu xue, 线性代数:xian xing dai shu, 概率论:gai lv lun"),
                   words("教程:jiao cheng, 习题集:xi ti ji, 基础:ji chu"), 2),
    ChineseSubject("G613", Word("学前教育", "xue qian jiao yu"), "教学参考资料",
                   words("幼儿:you er, 亲子游戏:qin zi you xi, 绘本阅读:hui ben yue du"),
                   words("指导:zhi dao, 一百例:yi bai li, 手册:shou ce"), 3),
    ChineseSubject("J212", Word("国画", "guo hua"), "技法",
                   words("国画:guo hua, 书法:shu fa, 山水画:shan shui hua, 花鸟画:hua niao hua"),
                   words("技法:ji fa, 入门:ru men, 临摹:lin mo"), 2),
    ChineseSubject("TS972.1", Word("菜谱", "cai pu"), "中国",
                   words("家常菜:jia chang cai, 鲁菜:lu cai, 粤菜:yue cai, 面点:mian dian"),
                   words("大全:da quan, 精选:jing xuan, 做法:zuo fa"), 3),
)

SURNAMES = words(
    "王:wang, 李:li, 张:zhang, 刘:liu, 陈:chen, 杨:yang, 黄:huang, 赵:zhao, 吴:wu, 周:zhou, 徐:xu, "
    "孙:sun, 马:ma, 朱:zhu, 胡:hu, 郭:guo, 何:he, 高:gao, 林:lin, 罗:luo, 郑:zheng, 梁:liang, "
    "谢:xie, 宋:song, 唐:tang, 韩:han, 冯:feng, 邓:deng, 曹:cao, 彭:peng, 欧阳:ou yang"
)
GIVEN_NAME_CHARACTERS = words(
    "伟:wei, 芳:fang, 娜:na, 敏:min, 静:jing, 丽:li, 强:qiang, 磊:lei, 军:jun, 洋:yang, 勇:yong, "
    "艳:yan, 杰:jie, 娟:juan, 涛:tao, 明:ming, 超:chao, 秀:xiu, 英:ying, 华:hua, 建:jian, 国:guo, "
    "志:zhi, 文:wen, 平:ping, 海:hai, 晓:xiao, 红:hong, 玉:yu, 春:chun, 德:de, 立:li, 新:xin, 燕:yan"
)

# (role as 200$f/701$4 writes it, weight)
CHINESE_ROLES: tuple[tuple[str, int], ...] = (("著", 6), ("编著", 3), ("主编", 3), ("编", 1))


@dataclass(frozen=True)
class Publisher:
    name: str
    place: str
    isbn_prefix: str   # EAN prefix + group + registrant, e.g. "9787302"
    weight: int

    @property
    def title_numbers(self) -> int:
        """How many ISBNs the registrant prefix allows (12 digits before the check digit)."""
        return 10 ** (12 - len(self.isbn_prefix))


CHINESE_PUBLISHERS: tuple[Publisher, ...] = (
    Publisher("人民文学出版社", "北京", "978702", 5),
    Publisher("作家出版社", "北京", "97875063", 3),
    Publisher("商务印书馆", "北京", "9787100", 3),
    Publisher("中华书局", "北京", "9787101", 3),
    Publisher("科学出版社", "北京", "978703", 3),
    Publisher("高等教育出版社", "北京", "978704", 3),
    Publisher("清华大学出版社", "北京", "9787302", 4),
    Publisher("北京大学出版社", "北京", "9787301", 2),
    Publisher("机械工业出版社", "北京", "9787111", 3),
    Publisher("人民邮电出版社", "北京", "9787115", 3),
    Publisher("电子工业出版社", "北京", "9787121", 2),
    Publisher("中国农业出版社", "北京", "9787109", 3),
    Publisher("人民卫生出版社", "北京", "9787117", 2),
    Publisher("国家图书馆出版社", "北京", "97875013", 1),
    Publisher("法律出版社", "北京", "97875118", 2),
    Publisher("上海译文出版社", "上海", "97875327", 2),
    Publisher("译林出版社", "南京", "97875447", 2),
    Publisher("浙江少年儿童出版社", "杭州", "97875342", 3),
    Publisher("山东人民出版社", "济南", "9787209", 2),
    Publisher("山东科学技术出版社", "济南", "97875331", 2),
    Publisher("云南人民出版社", "昆明", "9787222", 1),
    Publisher("广东人民出版社", "广州", "9787218", 1),
    Publisher("二十一世纪出版社", "南昌", "97875391", 2),
    Publisher("人民美术出版社", "北京", "9787102", 1),
    Publisher("上海书画出版社", "上海", "97875479", 1),
    Publisher("中国轻工业出版社", "北京", "97875019", 1),
)


@dataclass(frozen=True)
class EnglishSubject:
    topic: str          # goes into title patterns
    heading: str        # 650$a (LCSH)
    subdivision: str    # 650$x, may be empty
    ddc: str            # 082$a
    clc: str            # 690$a when a Chinese library catalogues the book in CNMARC
    weight: int
    fiction: bool = False


ENGLISH_SUBJECTS: tuple[EnglishSubject, ...] = (
    EnglishSubject("Library Science", "Library science", "", "020", "G250", 3),
    EnglishSubject("Cataloging and Classification", "Cataloging", "", "025.3", "G254", 2),
    EnglishSubject("Information Retrieval", "Information retrieval", "", "025.04", "G254.9", 2),
    EnglishSubject("Reading Promotion", "Reading promotion", "", "028.9", "G252.17", 1),
    EnglishSubject("Python Programming", "Python (Computer program language)", "", "005.133", "TP311.561", 3),
    EnglishSubject("Data Structures", "Data structures (Computer science)", "", "005.73", "TP311.12", 2),
    EnglishSubject("Rural Development", "Rural development", "China", "307.1412", "F320.3", 2),
    EnglishSubject("Sustainable Agriculture", "Sustainable agriculture", "", "630", "S3", 2),
    EnglishSubject("Chinese History", "China", "History", "951", "K20", 3),
    EnglishSubject("Public Health", "Public health", "", "362.1", "R1", 1),
    EnglishSubject("English Grammar", "English language", "Grammar", "428.2", "H314", 3),
    EnglishSubject("Children's Stories", "Children's stories, English", "", "823.92", "I561.84", 3, fiction=True),
    EnglishSubject("American Fiction", "American fiction", "21st century", "813.6", "I712.45", 3, fiction=True),
)

ENGLISH_NONFICTION_TITLES: tuple[tuple[str, str], ...] = (
    ("An introduction to {topic}", ""),
    ("{topic}", "a practical guide"),
    ("Foundations of {topic}", ""),
    ("{topic} in practice", "methods and cases"),
    ("The essentials of {topic}", ""),
    ("Understanding {topic}", "a beginner's handbook"),
)
ENGLISH_FICTION_NOUNS = (
    "River", "Lantern", "Harbor", "Orchard", "Winter", "Garden", "Mountain", "Summer", "Island", "Kite",
)
ENGLISH_FICTION_TITLES: tuple[tuple[str, str], ...] = (
    ("The {noun} at dawn", ""),
    ("A {noun} for two", ""),
    ("Beyond the {noun}", "a novel"),
    ("The last {noun}", ""),
    ("Letters from the {noun}", "a story"),
)

ENGLISH_GIVEN_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Susan", "Richard", "Karen", "Thomas", "Sarah", "Daniel", "Emily", "Andrew", "Helen",
)
ENGLISH_SURNAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
    "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker",
)

ENGLISH_PUBLISHERS: tuple[Publisher, ...] = (
    Publisher("Oxford University Press", "Oxford", "978019", 3),
    Publisher("Cambridge University Press", "Cambridge", "9781107", 3),
    Publisher("Routledge", "New York", "9780415", 2),
    Publisher("Penguin Books", "London", "978014", 3),
    Publisher("O'Reilly Media", "Sebastopol, CA", "97814919", 2),
    Publisher("Wiley", "Hoboken, NJ", "9781119", 2),
    Publisher("The MIT Press", "Cambridge, MA", "9780262", 1),
    Publisher("ALA Editions", "Chicago", "97808389", 1),
    Publisher("Springer", "Cham", "9783030", 2),
)

# MARC21 008/15-17 place codes for the publishers' places.
MARC21_PLACE_CODES = {
    "Oxford": "enk", "Cambridge": "enk", "London": "enk", "New York": "nyu", "Sebastopol, CA": "cau",
    "Hoboken, NJ": "nju", "Cambridge, MA": "mau", "Chicago": "ilu", "Cham": "sz ",
}

# Shelving locations by tier; the rule set's reference-only locations are added where a library has them.
LOCATIONS_BY_TIER: dict[str, tuple[str, ...]] = {
    "hub": ("中文图书借阅室", "中文图书借阅室", "少儿借阅室", "密集书库"),
    "branch": ("综合借阅室", "少儿阅览区"),
    "service_point": ("农家书屋",),
    "reading_room": ("阅览室",),
    "mobile": ("流动书车",),
    "self_service": ("自助借还",),
}

# Who publishes books of a class (by publisher name); the ISBN comes from the chosen publisher.
PUBLISHERS_BY_CLASS: dict[str, tuple[str, ...]] = {
    "G250": ("国家图书馆出版社", "北京大学出版社", "高等教育出版社"),
    "G254": ("国家图书馆出版社", "北京大学出版社", "高等教育出版社"),
    "G252": ("国家图书馆出版社", "商务印书馆"),
    "I247.5": ("人民文学出版社", "作家出版社", "译林出版社", "上海译文出版社"),
    "I267": ("人民文学出版社", "作家出版社", "商务印书馆"),
    "I287.5": ("浙江少年儿童出版社", "二十一世纪出版社", "人民文学出版社"),
    "K20": ("中华书局", "商务印书馆", "北京大学出版社"),
    "K928.9": ("山东人民出版社", "云南人民出版社", "广东人民出版社"),
    "D923": ("法律出版社", "北京大学出版社"),
    "D922.5": ("法律出版社",),
    "F320.3": ("中国农业出版社", "山东人民出版社", "科学出版社"),
    "F272": ("机械工业出版社", "清华大学出版社", "北京大学出版社"),
    "S512.1": ("中国农业出版社", "山东科学技术出版社"),
    "S63": ("中国农业出版社", "山东科学技术出版社"),
    "S8": ("中国农业出版社", "山东科学技术出版社"),
    "R212": ("人民卫生出版社", "山东科学技术出版社"),
    "R47": ("人民卫生出版社", "高等教育出版社"),
    "TP311.561": ("清华大学出版社", "人民邮电出版社", "机械工业出版社", "电子工业出版社"),
    "O13": ("高等教育出版社", "科学出版社", "清华大学出版社"),
    "G613": ("浙江少年儿童出版社", "二十一世纪出版社", "高等教育出版社"),
    "J212": ("人民美术出版社", "上海书画出版社"),
    "TS972.1": ("中国轻工业出版社", "山东科学技术出版社"),
}
