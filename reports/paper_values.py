"""The published numbers of Çaylı et al., "Knowledge Distillation for Efficient Audio-Visual Video
Captioning" (MSR-VTT test set), transcribed exactly from its Table I and Table II.

Note: the paper's Table I "Diff (%)" column holds fractions (0.008 means 0.8 %); its Table II
"Diff (%)" column holds true percentages.
"""

from trackers import schema

TABLE1_COLUMNS = (*schema.TABLE1_METRICS, schema.SCORE, "diff")

# (loss, k) -> values in TABLE1_COLUMNS order; loss "ce" with k 1.0 is the teacher.
TABLE1: dict[tuple[str, float], tuple[float, ...]] = {
    ("rep", 0.2): (0.722, 0.555, 0.422, 0.311, 0.267, 0.236, 0.554, 0.045, 0.321, 0.127),
    ("rep", 0.4): (0.715, 0.546, 0.411, 0.294, 0.223, 0.234, 0.539, 0.043, 0.306, 0.168),
    ("rep", 0.6): (0.709, 0.542, 0.412, 0.300, 0.232, 0.231, 0.543, 0.041, 0.308, 0.163),
    ("rep", 0.8): (0.719, 0.550, 0.413, 0.300, 0.256, 0.235, 0.545, 0.046, 0.315, 0.144),
    ("rep+ce", 0.2): (0.766, 0.613, 0.476, 0.357, 0.375, 0.256, 0.585, 0.054, 0.365, 0.008),
    ("rep+ce", 0.4): (0.774, 0.618, 0.473, 0.348, 0.359, 0.256, 0.582, 0.055, 0.361, 0.019),
    ("rep+ce", 0.6): (0.769, 0.616, 0.478, 0.357, 0.375, 0.258, 0.586, 0.055, 0.366, 0.005),
    ("rep+ce", 0.8): (0.765, 0.614, 0.479, 0.358, 0.366, 0.255, 0.583, 0.054, 0.362, 0.016),
    ("ce", 1.0): (0.760, 0.612, 0.473, 0.352, 0.397, 0.254, 0.583, 0.054, 0.368, 0.000),
}

# k -> (average feature-extraction time per video in s, Diff (%)); k 1.0 is the teacher.
# Measured on 100 random MSR-VTT test videos.
TABLE2: dict[float, tuple[float, float]] = {
    0.2: (2.77, 79.1),
    0.4: (5.65, 57.4),
    0.6: (8.31, 37.4),
    0.8: (11.03, 16.9),
    1.0: (13.28, 0.0),
}
TABLE2_VIDEOS = 100
