"""Running cases without pytest: SUT calls, evaluation, the judge cache, state files and the one
end of a run shared by the plugin, ``llmeval gate`` and ``llmeval report``."""
