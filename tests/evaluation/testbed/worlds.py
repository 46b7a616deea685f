"""Worlds of the synthetic testbed for its tests, and their knowledge bases."""

from evaluation.testbed.exact import KnowledgeBase
from pipelines.biographies import CITIES, SyntheticConfig, World, knowledge_base_table

SMALL = SyntheticConfig(people=40, head_people=4, head_documents=6, seed=1)


def knowledge_base_of(world: World) -> KnowledgeBase:
    return KnowledgeBase(knowledge_base_table(world).to_pylist(),
                         {"employers": world.employers, "cities": CITIES, "source": world.config.source()})
