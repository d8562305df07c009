#!/usr/bin/env python3
"""A seeded corpus (same bytes on every machine): sentences of English words drawn with
Zipf-like frequencies, as in real text. Usage: gen_corpus.py LINES > corpus.txt"""
import random
import sys

WORDS = """the of and to a in is it you that he was for on are with as I his they be at one
have this from or had by hot word but what some we can out other were all there when up use
your how said an each she which do their time if will way about many then them write would
like so these her long make thing see him two has look more day could go come did number sound
no most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every good
me give our under name very through just form sentence great think say help low line differ
turn cause much mean before move right boy old too same tell does set three want air well also
play small end put home read hand port large spell add even land here must big high such follow
act why ask men change went light kind off need house picture try us again animal point mother
world near build self earth father head stand own page should country found answer school grow
study still learn plant cover food sun four between state keep eye never last let thought city
tree cross farm hard start might story saw far sea draw left late run while press close night
real life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second book
carry took science eat room friend began idea fish mountain stop once base hear horse cut sure
watch color face wood main enough plain girl usual young ready above ever red list though feel
talk bird soon body dog family direct pose leave song measure door product black short numeral
class wind question happen complete ship area half rock order fire south problem piece told
knew pass since top whole king space heard best hour better true during hundred five remember
step early hold west ground interest reach fast verb sing listen six table travel less morning
""".split()


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rnd = random.Random(12)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]
    for _ in range(lines):
        words = rnd.choices(WORDS, weights, k=rnd.randint(4, 14))
        words[0] = words[0].capitalize()
        print(" ".join(words) + rnd.choice(".!?."))


main()
