"""The demo roster: about 300 made-up people across the seed departments, for `init --demo`.

It is a roster file like 人事's (CP932 CSV, Japanese headers) and goes through the real
importer (``kb.roster.import_staff``), so the staff pages and the participation figures
show something real. Every name is invented. Leave and retirement dates are set around the
day the demo roster was first loaded (its *anchor*), so loading it again on a later day
builds the very same file and the importer reports that nothing changed.
"""

import random
from datetime import date, timedelta

from kb import dates, roster, users

FIRST_NUMBER = 700001
# Invented people get invented addresses in the reserved .invalid domain: kb.mail never
# queues mail to it, so a demo installation with a real SMTP server mails none of them.
EMAIL_DOMAIN = "ward.invalid"
SEED = 12
# People per leaf department besides its head; the counter and the welfare 課 are larger.
HEADCOUNT = 8
LARGER = {"kumin-koseki": 16, "kumin-kazei": 12, "fukushi-seikatsu": 12, "kodomo-hoiku": 12,
          "fukushi-kaigo": 10, "kumin-kokuho": 10}
SURNAMES = [("佐藤", "サトウ", "sato"), ("鈴木", "スズキ", "suzuki"), ("高橋", "タカハシ", "takahashi"),
            ("田中", "タナカ", "tanaka"), ("伊藤", "イトウ", "ito"), ("渡辺", "ワタナベ", "watanabe"),
            ("山本", "ヤマモト", "yamamoto"), ("中村", "ナカムラ", "nakamura"), ("小林", "コバヤシ", "kobayashi"),
            ("加藤", "カトウ", "kato"), ("吉田", "ヨシダ", "yoshida"), ("山田", "ヤマダ", "yamada"),
            ("佐々木", "ササキ", "sasaki"), ("山口", "ヤマグチ", "yamaguchi"), ("松本", "マツモト", "matsumoto"),
            ("井上", "イノウエ", "inoue"), ("木村", "キムラ", "kimura"), ("林", "ハヤシ", "hayashi"),
            ("斎藤", "サイトウ", "saito"), ("清水", "シミズ", "shimizu"), ("山崎", "ヤマザキ", "yamazaki"),
            ("森", "モリ", "mori"), ("池田", "イケダ", "ikeda"), ("橋本", "ハシモト", "hashimoto"),
            ("阿部", "アベ", "abe"), ("石川", "イシカワ", "ishikawa"), ("前田", "マエダ", "maeda"),
            ("藤田", "フジタ", "fujita"), ("小川", "オガワ", "ogawa"), ("岡田", "オカダ", "okada"),
            ("長谷川", "ハセガワ", "hasegawa"), ("村上", "ムラカミ", "murakami"), ("近藤", "コンドウ", "kondo"),
            ("石井", "イシイ", "ishii"), ("坂本", "サカモト", "sakamoto"), ("遠藤", "エンドウ", "endo")]
GIVEN = [("太郎", "タロウ", "taro"), ("花子", "ハナコ", "hanako"), ("健一", "ケンイチ", "kenichi"),
         ("美咲", "ミサキ", "misaki"), ("翔太", "ショウタ", "shota"), ("陽菜", "ヒナ", "hina"),
         ("大輔", "ダイスケ", "daisuke"), ("由美", "ユミ", "yumi"), ("直樹", "ナオキ", "naoki"),
         ("恵子", "ケイコ", "keiko"), ("拓也", "タクヤ", "takuya"), ("真由美", "マユミ", "mayumi"),
         ("誠", "マコト", "makoto"), ("愛", "アイ", "ai"), ("浩二", "コウジ", "koji"),
         ("さくら", "サクラ", "sakura"), ("隆", "タカシ", "takashi"), ("智子", "トモコ", "tomoko"),
         ("亮", "リョウ", "ryo"), ("裕子", "ユウコ", "yuko"), ("和也", "カズヤ", "kazuya"),
         ("彩", "アヤ", "aya"), ("修", "オサム", "osamu"), ("千尋", "チヒロ", "chihiro"),
         ("蓮", "レン", "ren"), ("結衣", "ユイ", "yui"), ("博", "ヒロシ", "hiroshi"),
         ("明美", "アケミ", "akemi"), ("悠人", "ユウト", "yuto"), ("麻衣", "マイ", "mai")]
POSITIONS = (["課長補佐"] + ["係長"] * 2 + ["主任"] * 3 + ["主事"] * 5 + ["会計年度任用職員"] * 2)
# (在籍区分, days from the anchor to its start, to its end; None = open): at least two people
# on each kind of leave, one leave already over, one about to begin, and a few retired.
STATUS_PLAN = [
    ("休職", -90, 90), ("休職", -20, 160),
    ("病気休暇", -10, 20), ("病気休暇", -3, 11), ("病気休暇", -75, -30),
    ("産前産後休暇", -30, 68), ("産前産後休暇", 14, 112),
    ("育児休業", -200, 165), ("育児休業", -40, 325), ("育児休業", -120, 245),
    ("介護休暇", -5, 55), ("介護休暇", -60, 30),
    ("退職", -20, None), ("退職", -20, None), ("退職", -50, None),
]
HEADER = ["職員番号", "氏名", "氏名カナ", "所属", "役職", "在籍区分", "区分開始日", "区分終了日",
          "メールアドレス"]


def _head_position(name: str) -> str:
    """The title of a 所属's head, as positions.yaml names it (all make a 所属長)."""
    for ending, title in (("事務所", "所長"), ("図書館", "館長"), ("室", "室長")):
        if name.endswith(ending):
            return title
    return "課長"


def demo_rows(departments: list[dict], anchor: date) -> list[list[str]]:
    """The demo roster's rows (the same for the same departments and anchor): a 部長 in each
    部, a head (課長, 所長, 室長, 館長) in each 所属 without 課, staff under them, and the
    statuses of STATUS_PLAN dated around ``anchor``."""
    rng = random.Random(SEED)
    parents = {d["parent_id"] for d in departments if d["parent_id"]}
    people: list[tuple[dict, str]] = []
    for department in departments:
        if department["department_id"] in parents:
            people.append((department, "部長"))
            continue
        people.append((department, _head_position(department["name"])))
        count = LARGER.get(department["code"], HEADCOUNT)
        people += [(department, rng.choice(POSITIONS)) for _ in range(count)]
    staff_rows = [n for n, (_, position) in enumerate(people) if position in POSITIONS]
    statuses = dict(zip(rng.sample(staff_rows, len(STATUS_PLAN)), STATUS_PLAN))
    rows = []
    for n, (department, position) in enumerate(people):
        number = str(FIRST_NUMBER + n)
        (surname, surname_kana, surname_r) = rng.choice(SURNAMES)
        (given, given_kana, given_r) = rng.choice(GIVEN)
        status, start, until = "", "", ""
        if n in statuses:
            status, begins, ends = statuses[n]
            start = (anchor + timedelta(days=begins)).isoformat()
            until = (anchor + timedelta(days=ends)).isoformat() if ends is not None else ""
        rows.append([number, f"{surname}　{given}", f"{surname_kana} {given_kana}", department["code"],
                     position, status, start, until,
                     f"{given_r}.{surname_r}.{number[-3:]}@{EMAIL_DOMAIN}"])
    return rows


def demo_roster_file(departments: list[dict], anchor: date) -> bytes:
    """The demo roster as 人事 would hand it over: CP932, CRLF."""
    lines = [",".join(row) for row in [HEADER, *demo_rows(departments, anchor)]]
    return ("\r\n".join(lines) + "\r\n").encode("cp932")


def load_demo_roster(db, *, managers: frozenset, today: date | None = None) -> roster.Plan:
    """Import the demo roster through the real importer, as the command line (an admin).

    The anchor is the day the demo roster was first loaded (its first person's first
    assignment), else ``today``: loading it again builds the same file, so nothing changes.
    Raises what ``roster.import_staff`` raises.
    """
    today = today or dates.office_today()
    first = db.execute(
        "SELECT min(a.starts_on) FROM staff_assignments a JOIN users u ON u.user_id = a.user_id"
        " WHERE u.employee_number = ?", [str(FIRST_NUMBER)]).fetchone()[0]
    anchor = date.fromisoformat(first) if first else today
    departments = users.list_departments(db)
    return roster.import_staff(db, users.SYSTEM, demo_roster_file(departments, anchor),
                               "demo-roster.csv", managers=managers, today=today)
