-- Tasks, events and task results belong to a live instance: deleting the
-- instance (finish, kill) deletes them through ON DELETE CASCADE. The cascade
-- runs after the deleting statement with a fresh snapshot, so it also removes
-- rows that a concurrent transaction committed while the delete waited for the
-- instance row lock (a kill landing on a large continue_ left such tasks behind).
-- Rows already orphaned that way are removed first, with the tables locked
-- against writers so that a process still on older code cannot add an orphan
-- between the clean-up and the constraints.

LOCK TABLE cereal_workflow_instances, cereal_tasks, cereal_workflow_events,
    cereal_task_results IN SHARE ROW EXCLUSIVE MODE;

DELETE FROM cereal_tasks AS c
WHERE NOT EXISTS (SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = c.instance_id);
DELETE FROM cereal_workflow_events AS c
WHERE NOT EXISTS (SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = c.instance_id);
DELETE FROM cereal_task_results AS c
WHERE NOT EXISTS (SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = c.instance_id);

ALTER TABLE cereal_tasks
    ADD CONSTRAINT cereal_tasks_instance_fk FOREIGN KEY (instance_id)
    REFERENCES cereal_workflow_instances (id) ON DELETE CASCADE;
ALTER TABLE cereal_workflow_events
    ADD CONSTRAINT cereal_workflow_events_instance_fk FOREIGN KEY (instance_id)
    REFERENCES cereal_workflow_instances (id) ON DELETE CASCADE;
ALTER TABLE cereal_task_results
    ADD CONSTRAINT cereal_task_results_instance_fk FOREIGN KEY (instance_id)
    REFERENCES cereal_workflow_instances (id) ON DELETE CASCADE;
