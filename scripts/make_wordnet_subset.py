"""Build the WordNet 3.0 class hierarchies shipped in audit/analyses/semantics/data/ from a WordNet dict folder.

For each built-in label set that maps to WordNet, ``wordnet-<set>.json``: the classes (label-set order), one
wnid per class, and every synset on the hypernym paths above them (``@`` and ``@i`` pointers) with its name,
read by ``audit.analyses.semantics.wordnet.read_wordnet``. ImageNet-1k maps by its wnids
(audit/label_sets/imagenet-1k-wnids.txt, all 1000 must resolve); CIFAR-10, CIFAR-100 and Fashion-MNIST by the
curated table ``SENSES`` below (the sense chosen per class, and why where it is not the obvious one). MNIST is not
mapped (``wordnet.SKIPPED``). Also written: docs/wordnet-senses.md (the table with WordNet's glosses) and the
WordNet section of NOTICE.txt. The output depends only on the WordNet files: sorted keys, no timestamps, so a
re-run gives byte-identical files.

    .venv/bin/python scripts/make_wordnet_subset.py                       # Debian: apt-get install wordnet-base
    .venv/bin/python scripts/make_wordnet_subset.py --wordnet DIR --out DIR --docs FILE
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from audit.analyses.semantics.embeddings import DATA_DIR
from audit.analyses.semantics.wordnet import NOTICE_MARK, SKIPPED, ancestors, read_wordnet
from audit.data.labels import BUILTIN, imagenet_wnids

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "wordnet-senses.md"

# label set -> (class, synset, why). The class order is the label set's; "why" is empty where the sense is the
# lemma's first noun sense and plainly the pictured thing.
SENSES: dict[str, list[tuple[str, str, str]]] = {
    "cifar10": [
        ("airplane", "airplane.n.01", ""),
        ("automobile", "automobile.n.01", "= car.n.01"),
        ("bird", "bird.n.01", ""),
        ("cat", "domestic_cat.n.01", "CIFAR-10's cats are house cats; cat.n.01 is the genus-level feline that also "
                                     "covers wildcats"),
        ("deer", "deer.n.01", ""),
        ("dog", "dog.n.01", "the domestic dog (dog.n.02-07 are people, a sausage and devices)"),
        ("frog", "frog.n.01", ""),
        ("horse", "horse.n.01", ""),
        ("ship", "ship.n.01", ""),
        ("truck", "truck.n.01", "truck.n.02 is a hand truck"),
    ],
    "cifar100": [
        ("apple", "apple.n.01", "the fruit (apple.n.02 is the tree); CIFAR-100 files it under fruit and vegetables"),
        ("aquarium_fish", "fish.n.01", "WordNet has no aquarium or ornamental fish synset; the pictures show many "
                                       "species, so the general fish (not fish.n.02, fish as food)"),
        ("baby", "baby.n.01", ""),
        ("bear", "bear.n.01", ""),
        ("beaver", "beaver.n.07", "the rodent; beaver.n.01-06 are a fur, a person, a beard, hats and armour"),
        ("bed", "bed.n.01", ""),
        ("bee", "bee.n.01", ""),
        ("beetle", "beetle.n.01", ""),
        ("bicycle", "bicycle.n.01", ""),
        ("bottle", "bottle.n.01", ""),
        ("bowl", "bowl.n.01", "the vessel; bowl.n.03 (a serving dish) is narrower than the pictured bowls"),
        ("boy", "boy.n.01", "= male_child.n.01, a youthful male person"),
        ("bridge", "bridge.n.01", ""),
        ("bus", "bus.n.01", ""),
        ("butterfly", "butterfly.n.01", ""),
        ("camel", "camel.n.01", ""),
        ("can", "can.n.01", "the metal container"),
        ("castle", "castle.n.02", "the fortified building; castle.n.01 is a stately mansion (= palace.n.01)"),
        ("caterpillar", "caterpillar.n.01", "the larva; caterpillar.n.02 is the tracked vehicle"),
        ("cattle", "cattle.n.01", ""),
        ("chair", "chair.n.01", ""),
        ("chimpanzee", "chimpanzee.n.01", ""),
        ("clock", "clock.n.01", ""),
        ("cloud", "cloud.n.02", "a visible mass of water or ice in the sky; cloud.n.01 is any collection of "
                                "particles (smoke, dust)"),
        ("cockroach", "cockroach.n.01", ""),
        ("couch", "couch.n.01", "= sofa.n.01"),
        ("crab", "crab.n.01", "the animal (crab.n.05 is its flesh as food)"),
        ("crocodile", "crocodile.n.01", ""),
        ("cup", "cup.n.01", ""),
        ("dinosaur", "dinosaur.n.01", ""),
        ("dolphin", "dolphin.n.02", "the toothed whale; dolphin.n.01 is the dolphinfish"),
        ("elephant", "elephant.n.01", ""),
        ("flatfish", "flatfish.n.02", "the fish; flatfish.n.01 is its flesh as food"),
        ("forest", "forest.n.02", "land covered with trees (under land.n.04, beside plain.n.01): CIFAR-100 files "
                                  "it with the large natural outdoor scenes; forest.n.01 is the vegetation"),
        ("fox", "fox.n.01", ""),
        ("girl", "girl.n.02", "= female_child.n.01, a youthful female person, the counterpart of boy.n.01; "
                              "girl.n.01 is a young woman"),
        ("hamster", "hamster.n.01", ""),
        ("house", "house.n.01", ""),
        ("kangaroo", "kangaroo.n.01", ""),
        ("keyboard", "keyboard.n.01", "the set of keys (computer or piano); keyboard.n.02 is a key holder"),
        ("lamp", "lamp.n.02", "the piece of furniture holding electric bulbs, as pictured (table and floor "
                              "lamps); lamp.n.01 is any artificial light source"),
        ("lawn_mower", "lawn_mower.n.01", ""),
        ("leopard", "leopard.n.02", "the animal; leopard.n.01 is its pelt"),
        ("lion", "lion.n.01", ""),
        ("lizard", "lizard.n.01", ""),
        ("lobster", "lobster.n.02", "the animal; lobster.n.01 is its flesh as food"),
        ("man", "man.n.01", ""),
        ("maple_tree", "maple.n.02", "the tree; maple.n.01 is its wood"),
        ("motorcycle", "motorcycle.n.01", ""),
        ("mountain", "mountain.n.01", ""),
        ("mouse", "mouse.n.01", "the rodent; mouse.n.04 is the computer mouse"),
        ("mushroom", "mushroom.n.05", "the edible fungus under vegetable.n.01: CIFAR-100 files mushrooms with fruit "
                                      "and vegetables, and ImageNet's 'mushroom' class is this synset "
                                      "(n07734744); mushroom.n.02 would be the fungus as an organism"),
        ("oak_tree", "oak.n.02", "the tree; oak.n.01 is its wood"),
        ("orange", "orange.n.01", "the fruit; orange.n.02 is the colour, orange.n.03 the tree"),
        ("orchid", "orchid.n.01", ""),
        ("otter", "otter.n.02", "the animal; otter.n.01 is its fur"),
        ("palm_tree", "palm.n.03", "the tree; palm.n.01 is the palm of the hand"),
        ("pear", "pear.n.01", "the fruit; pear.n.02 is the tree"),
        ("pickup_truck", "pickup_truck.n.01", "= pickup.n.01"),
        ("pine_tree", "pine.n.01", ""),
        ("plain", "plain.n.01", ""),
        ("plate", "plate.n.04", "the dish food is served on; plate.n.01-03 are home plate, a sheet and an "
                                "illustration"),
        ("poppy", "poppy.n.01", ""),
        ("porcupine", "porcupine.n.01", ""),
        ("possum", "possum.n.01", "= opossum.n.02, the American opossum; possum.n.02 is the Australian "
                                  "phalanger"),
        ("rabbit", "rabbit.n.01", ""),
        ("raccoon", "raccoon.n.02", "the animal; raccoon.n.01 is its fur"),
        ("ray", "ray.n.07", "the fish; ray.n.01-06 are beams of light, lines and fin spines"),
        ("road", "road.n.01", ""),
        ("rocket", "rocket.n.01", "the vehicle; rocket.n.02 is the engine, rocket.n.03 the salad plant"),
        ("rose", "rose.n.01", "the plant (its only plant sense)"),
        ("sea", "sea.n.01", ""),
        ("seal", "seal.n.09", "the marine mammal; seal.n.01-08 are wax, stamps, a fur and fasteners"),
        ("shark", "shark.n.01", ""),
        ("shrew", "shrew.n.02", "the animal; shrew.n.01 is a bad-tempered woman"),
        ("skunk", "skunk.n.04", "the animal; skunk.n.01-03 are a person, a shutout and marijuana"),
        ("skyscraper", "skyscraper.n.01", ""),
        ("snail", "snail.n.01", ""),
        ("snake", "snake.n.01", ""),
        ("spider", "spider.n.01", ""),
        ("squirrel", "squirrel.n.01", ""),
        ("streetcar", "streetcar.n.01", ""),
        ("sunflower", "sunflower.n.01", ""),
        ("sweet_pepper", "sweet_pepper.n.02", "the vegetable (CIFAR-100: fruit and vegetables); sweet_pepper.n.01 is "
                                              "the plant"),
        ("table", "table.n.02", "the furniture; table.n.01 is a table of data"),
        ("tank", "tank.n.01", "the armoured military vehicle (CIFAR-100: vehicles 2); tank.n.02 is a vessel for "
                              "liquids"),
        ("telephone", "telephone.n.01", ""),
        ("television", "television.n.03", "= television_receiver.n.01, the set; television.n.01-02 are "
                                          "broadcasting and the system"),
        ("tiger", "tiger.n.02", "the animal; tiger.n.01 is a fierce person"),
        ("tractor", "tractor.n.01", "the farm tractor; tractor.n.02 is the cab of a trailer truck"),
        ("train", "train.n.01", ""),
        ("trout", "trout.n.02", "the fish; trout.n.01 is its flesh as food"),
        ("tulip", "tulip.n.01", ""),
        ("turtle", "turtle.n.02", "the reptile; turtle.n.01 is a turtleneck sweater"),
        ("wardrobe", "wardrobe.n.01", "the furniture; wardrobe.n.02 is a collection of clothes"),
        ("whale", "whale.n.02", "the animal; whale.n.01 is a very large person"),
        ("willow_tree", "willow.n.01", ""),
        ("wolf", "wolf.n.01", ""),
        ("woman", "woman.n.01", ""),
        ("worm", "worm.n.01", ""),
    ],
    "fashion-mnist": [
        ("T-shirt/top", "t-shirt.n.01", "= jersey.n.03 (under shirt.n.01); the class is mostly T-shirts; top.n.10 "
                                        "(a woman's garment from shoulders to waist) covers the tops, but one "
                                        "synset per class is kept and T-shirt names the class first"),
        ("Trouser", "trouser.n.01", "the garment; trouser.n.02 is relating to trousers (a trouser pocket)"),
        ("Pullover", "pullover.n.01", ""),
        ("Dress", "dress.n.01", "the woman's one-piece garment; dress.n.02-03 are attire and apparel"),
        ("Coat", "coat.n.01", ""),
        ("Sandal", "sandal.n.01", ""),
        ("Shirt", "shirt.n.01", ""),
        ("Sneaker", "sneaker.n.01", "= gym_shoe.n.01"),
        ("Bag", "bag.n.04", "= handbag: the pictured bags are handbags and purses; bag.n.01 is any flexible "
                            "container with a single opening"),
        ("Ankle boot", "boot.n.01", "WordNet has no ankle-boot synset; boot.n.01 is the boot (footwear covering "
                                    "the foot and lower leg); chukka.n.02 is a laced ankle shoe, not a boot"),
    ],
}


def mapping(graph, label_set: str) -> tuple[list[str], list[str], dict[str, str]]:
    """Classes, wnids and the reasons (class -> why) of one label set."""
    classes = BUILTIN[label_set]()
    if label_set == "imagenet-1k":
        wnids = imagenet_wnids()
        missing = [w for w in wnids if w not in graph.hypernyms]
        if len(wnids) != 1000 or missing:
            raise SystemExit(f"imagenet-1k: {len(wnids)} wnids, {len(missing)} not in WordNet: {missing[:5]}")
        return classes, wnids, {}
    table = SENSES[label_set]
    if [c for c, _, _ in table] != classes:
        raise SystemExit(f"{label_set}: the curated table's classes differ from the label set's")
    return classes, [graph.lookup(s) for _, s, _ in table], {c: why for c, _, why in table if why}


def write_set(graph, label_set: str, out: Path) -> tuple[Path, int]:
    classes, wnids, why = mapping(graph, label_set)
    sub = ancestors(graph, wnids)
    data = {
        "label_set": label_set,
        "wordnet_version": graph.version,
        "source": "Princeton WordNet 3.0 (data.noun, index.noun); hypernyms are the @ and @i pointers. "
                  "Made by scripts/make_wordnet_subset.py; licence: LICENSE-WordNet.txt",
        "classes": classes,
        "wnids": wnids,
        "why": why,
        "synsets": {w: {"name": sub.names[w], "hypernyms": list(sub.hypernyms[w])} for w in sub.hypernyms},
    }
    path = out / f"wordnet-{label_set}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, len(sub.hypernyms)


def definition(gloss: str) -> str:
    """A gloss without its example sentences, safe in a Markdown table cell."""
    return gloss.split('; "')[0].strip().replace("|", "\\|")


def write_docs(graph, path: Path) -> None:
    lines = [
        "# WordNet senses of the built-in label sets",
        "",
        "Made by `scripts/make_wordnet_subset.py` from WordNet 3.0 (do not edit by hand: edit the table `SENSES` in",
        "the script and re-run it). Each class maps to one noun synset; the hierarchy the audit uses is the",
        "hypernym graph above these synsets (`audit/analyses/semantics/data/wordnet-<set>.json`). A synset name",
        "is `lemma.n.NN`, NN the sense number in WordNet's `index.noun`; where WordNet names the synset by another",
        "lemma, the *why* column says so (`= car.n.01`). The gloss is WordNet's definition (examples left out).",
        "",
        "- **ImageNet-1k**: the classes *are* WordNet 3.0 noun synsets; the wnid (`n01440764`) is the synset's",
        "  offset in `data.noun`, so the 1000 classes map directly (`audit/label_sets/imagenet-1k-wnids.txt`).",
    ]
    lines += [f"- **{name.upper() if name == 'mnist' else name}**: not mapped. {why}." for name, why in
              sorted(SKIPPED.items())]
    titles = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion-mnist": "Fashion-MNIST"}
    for label_set, table in SENSES.items():
        lines += ["", f"## {titles[label_set]}", "", "| class | synset | wnid | gloss | why |",
                  "|---|---|---|---|---|"]
        for cls, synset, why in table:
            wnid = graph.lookup(synset)
            lines.append(f"| {cls} | {synset} | {wnid} | {definition(graph.glosses[wnid])} | {why} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_notice(out: Path, sizes: dict[str, int]) -> None:
    """Replace the WordNet section of NOTICE.txt (from NOTICE_MARK to the end); the rest is kept."""
    path = out / "NOTICE.txt"
    kept = path.read_text(encoding="utf-8") if path.is_file() else ""
    kept = kept.split(NOTICE_MARK)[0].rstrip("\n")
    section = [
        NOTICE_MARK + ": wordnet-<label set>.json, derived from Princeton WordNet 3.0",
        "  (George A. Miller, 'WordNet: A Lexical Database for English', Communications of the ACM 38(11), 1995;",
        "  Christiane Fellbaum (ed.), 'WordNet: An Electronic Lexical Database', MIT Press, 1998;",
        "  https://wordnet.princeton.edu/), files data.noun and index.noun as distributed in Debian's",
        "  wordnet-base 1:3.0. WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.",
        "  Licence: LICENSE-WordNet.txt. Made by scripts/make_wordnet_subset.py: for each label set the classes,",
        "  one synset per class (ImageNet-1k by its wnids; the curated senses of the others: docs/wordnet-senses.md)",
        "  and the synsets on their hypernym paths (@ and @i pointers), with their names. Synsets:",
    ]
    section += [f"  {name}: {n}" for name, n in sorted(sizes.items())]
    section += textwrap.wrap(f"mnist: not mapped ({SKIPPED['mnist']}).", 108, initial_indent="  ",
                             subsequent_indent="    ")
    text = (kept + "\n\n" if kept else "") + "\n".join(section) + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"),
                        help="a WordNet 3.0 dict folder (default: Debian's /usr/share/wordnet)")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="where the JSON files and NOTICE.txt go")
    parser.add_argument("--docs", type=Path, default=DOCS, help="where the senses table goes")
    args = parser.parse_args(argv)

    graph = read_wordnet(args.wordnet)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for label_set in sorted(BUILTIN):
        if label_set in SKIPPED:
            continue
        path, sizes[label_set] = write_set(graph, label_set, args.out)
        print(f"{path}: {sizes[label_set]} synsets, {path.stat().st_size / 1e3:.0f} kB")
    write_docs(graph, args.docs)
    write_notice(args.out, sizes)


if __name__ == "__main__":
    main()
