-- dialgate 006: calling law per template (design §7.8): cooldowns after chosen outcomes, regional
-- overrides, named presets and the caller-ID choice, kept together as the template gave them.
ALTER TABLE templates ADD COLUMN calling_law jsonb;
