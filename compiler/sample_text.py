"""English text shipped with the kit: calibration text for activation scales, and separate
evaluation text for the fidelity benchmarks (never used for calibration).

Both are original prose written for mixpim (no licence questions). The evaluation text is 290
SmolLM2 tokens (the benchmarks score the first 257: 256 predictions), the calibration text 240.
"""

__all__ = ["CALIBRATION_TEXT", "EVALUATION_TEXT"]

#: Text the compiler runs through the float model to calibrate static activation scales.
CALIBRATION_TEXT = (
    "Water covers about seventy percent of the surface of the Earth, but only a small fraction of "
    "it is fresh water that people can drink. Most of the fresh water is frozen in glaciers and ice "
    "caps, and much of the rest lies deep underground. Rivers and lakes, which supply many cities, "
    "hold less than one percent of the total. As the population grows, engineers and farmers are "
    "looking for new ways to use water more efficiently. Drip irrigation delivers water directly to "
    "the roots of plants, and modern treatment plants can turn waste water into clean water again. "
    "In some dry countries, desalination plants remove salt from sea water, although the process "
    "needs a great deal of energy. Scientists also study how climate change affects rainfall, "
    "because even small shifts in the weather can leave some regions with floods and others with "
    "drought. Protecting wetlands and forests helps to keep water clean, since plants and soil "
    "filter many pollutants before they reach rivers. Children learn in school that the water cycle "
    "moves water from the oceans to the sky and back to the land, but the details of this cycle are "
    "still an active field of research. Good data from satellites, weather stations and river "
    "gauges help governments plan for the future and respond to emergencies."
)

#: Text the fidelity benchmarks score (teacher-forced next-token agreement and perplexity).
EVALUATION_TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined several existing technologies into a system that could produce books quickly and "
    "cheaply. Before his invention, most books in Europe were copied by hand, usually by monks "
    "working in monasteries. A single Bible could take a scribe more than a year to finish, and "
    "only wealthy institutions could afford to own one. Gutenberg's press used movable metal type, "
    "oil-based ink and a wooden screw press adapted from those used to make wine. Within a few "
    "decades, printing shops had opened in more than two hundred cities across the continent. The "
    "price of books fell dramatically, and ideas began to travel faster than ever before. Scholars "
    "could compare identical copies of a text, which made it easier to correct errors and build on "
    "earlier work. Pamphlets spread news of religious and political debates to ordinary people, and "
    "literacy rates slowly began to rise. Historians often argue that the press helped to make the "
    "Reformation, the Scientific Revolution and the growth of modern science possible. Today we "
    "face a similar change as digital networks carry information around the world in seconds. Like "
    "the printers of the past, we are still learning how these new tools will shape the way people "
    "think, work and live together. Some of the questions are practical: how should we store "
    "knowledge so that it lasts, and who decides which information is trustworthy? Others are "
    "harder to answer, because they concern the kind of society we want to build."
)
